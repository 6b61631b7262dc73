"""Experiments: plain functions over dataclass specs, returning JSON-serialisable results."""
