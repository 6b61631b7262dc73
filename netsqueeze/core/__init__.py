"""Numerical core: numpy only, never imports torch."""
