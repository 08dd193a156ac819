"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from assistant.store import migrate
from assistant.store.db import make_engine
from assistant.store.tables import Base


def test_fresh_database_is_at_head_and_matches_the_models(database_url: str) -> None:
    assert migrate.current(database_url) is None
    migrate.upgrade(database_url)
    assert migrate.current(database_url) == migrate.head()
    diff = migrate.model_diff(database_url)
    assert diff == [], (
        "assistant/store/tables.py and the migrations differ; write a new revision with\n"
        '  .venv/bin/python -m assistant.store.migrate revision "what changed"\n'
        f"differences: {diff}"
    )


def test_upgrade_is_idempotent_and_downgrade_removes_everything(database_url: str) -> None:
    migrate.upgrade(database_url)
    migrate.upgrade(database_url)  # nothing left to do
    engine = make_engine(database_url)
    try:
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        command.downgrade(migrate.alembic_config(database_url), "base")
        assert migrate.current(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head()
    finally:
        engine.dispose()
