"""Fixtures: radicale (see module docstring once filled in)."""
