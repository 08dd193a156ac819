"""Alembic migrations of the service database (see ``assistant.store.migrate``)."""
