"""Domain: pure values and rules (no SQLAlchemy, no I/O, `now` passed in)."""
