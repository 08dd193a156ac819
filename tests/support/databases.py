"""Fixtures: databases (see module docstring once filled in)."""
