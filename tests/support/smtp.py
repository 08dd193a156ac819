"""Fixtures: smtp (see module docstring once filled in)."""
