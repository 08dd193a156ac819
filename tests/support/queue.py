"""Fixtures: queue (see module docstring once filled in)."""
