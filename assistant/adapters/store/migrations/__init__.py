"""Alembic migrations of the service database (see ``assistant.adapters.store.migrate``)."""
