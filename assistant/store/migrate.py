"""Database migrations (Alembic), driven from code: no alembic.ini on disk.

The scripts live in the ``assistant/store/migrations`` package. ``upgrade`` brings a
database to a revision, ``current`` tells where it is, ``model_diff`` lists what the tables in
``assistant.store.tables`` have that the migrations do not (empty when in step).

A developer who changed the tables writes the next revision with::

    python -m assistant.store.migrate revision "what changed"

which upgrades a scratch SQLite file to head and autogenerates the difference.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from assistant.store.db import make_engine

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Autogenerate hook: our UTC column type is rendered as the plain DateTime it stores."""
    from assistant.store.tables import UtcDateTime

    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime()"
    return False


def alembic_config(url: str = "") -> Config:
    """An Alembic config pointing at the package's migration scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@contextmanager
def _connection(engine_or_url: str | Engine) -> Iterator[Connection]:
    """A connection in a transaction that commits on success."""
    if isinstance(engine_or_url, Engine):
        with engine_or_url.begin() as conn:
            yield conn
        return
    engine = make_engine(engine_or_url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def upgrade(engine_or_url: str | Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` (all of them by default)."""
    with _connection(engine_or_url) as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current(engine_or_url: str | Engine) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    with _connection(engine_or_url) as conn:
        rev: str | None = MigrationContext.configure(conn).get_current_revision()
        return rev


def head() -> str:
    """The newest revision among the scripts."""
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert rev is not None
    return rev


def model_diff(engine_or_url: str | Engine) -> list[Any]:
    """What the models differ in from the database (Alembic's diff tuples); [] = in step."""
    from assistant.store.tables import Base

    with _connection(engine_or_url) as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "render_item": render_item}
        )
        diffs: list[Any] = compare_metadata(ctx, Base.metadata)
        return diffs


def make_revision(message: str) -> None:
    """Autogenerate the next revision against a scratch database at head."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'scratch.db'}"
        upgrade(url)
        with _connection(url) as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.revision(cfg, message=message, autogenerate=True, rev_id=_next_rev_id())


def _next_rev_id() -> str:
    """Revisions are numbered 0001, 0002, ... in the order they were written."""
    numbers = [
        int(s.revision)
        for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()
        if s.revision.isdigit()
    ]
    return f"{max(numbers, default=0) + 1:04d}"


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "revision":
        make_revision(argv[1])
        return 0
    print('usage: python -m assistant.store.migrate revision "message"', file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
