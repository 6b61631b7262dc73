"""Built-in compression recipes (TOML), one per reference network."""
