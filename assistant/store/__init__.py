"""Persistence: SQLAlchemy 2 tables, the engine factory and the unit of work."""
