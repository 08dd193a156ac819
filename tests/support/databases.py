"""Fixtures: a fresh, migrated database per test, on SQLite and on PostgreSQL.

``database_url`` is parametrized: ``sqlite`` (a file in tmp_path) and ``postgresql`` (a
uniquely named database created for the test and dropped after it). PostgreSQL is found
at ``$TEST_POSTGRES_URL`` or else at 127.0.0.1:5432 (trust auth, user ``postgres`` or
``root``, maintenance database ``test``). When it is not reachable the PostgreSQL tests
skip, or fail when ``CI=true``.

``uow`` is a UnitOfWork on that database after ``assistant.store.migrate.upgrade``, so
every database test runs on the schema the migrations build; ``sqlite_uow`` is the same
on SQLite only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from assistant.store.db import UnitOfWork, make_engine
from assistant.store.migrate import upgrade
from tests.support.services import unavailable

PG_CANDIDATES = [
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
]


def _find_postgres() -> tuple[str | None, str]:
    """The first admin URL that connects and may create databases, or None and why not."""
    explicit = os.environ.get("TEST_POSTGRES_URL")
    candidates = [explicit] if explicit else PG_CANDIDATES
    reasons = []
    for url in candidates:
        engine = create_engine(
            url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        try:
            with engine.connect() as conn:
                may_create = conn.scalar(
                    text("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")
                )
            if may_create:
                return url, ""
            reasons.append(f"{make_url(url).username}: may not create databases")
        except OperationalError as exc:
            u = make_url(url)
            first_line = str(exc.orig).strip().splitlines()[0]
            reasons.append(f"{u.username}@{u.host}:{u.port}: {first_line}")
        finally:
            engine.dispose()
    return None, "PostgreSQL not reachable (" + "; ".join(reasons) + ")"


@pytest.fixture(scope="session")
def postgres_admin_url() -> tuple[str | None, str]:
    """(admin URL, "") or (None, reason) — probed once per session."""
    return _find_postgres()


@pytest.fixture
def postgres_url(postgres_admin_url: tuple[str | None, str]) -> Iterator[str]:
    """A fresh empty PostgreSQL database for this test, dropped afterwards."""
    admin_url, reason = postgres_admin_url
    if admin_url is None:
        unavailable(reason)
    name = f"t_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'assistant.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _migrated_uow(url: str) -> Iterator[UnitOfWork]:
    upgrade(url)
    engine = make_engine(url)
    try:
        yield UnitOfWork(engine)
    finally:
        engine.dispose()


@pytest.fixture
def uow(database_url: str) -> Iterator[UnitOfWork]:
    """A unit of work on a database migrated to head (SQLite and PostgreSQL)."""
    yield from _migrated_uow(database_url)


@pytest.fixture
def sqlite_uow(tmp_path: Path) -> Iterator[UnitOfWork]:
    """A unit of work on a migrated SQLite file, for tests that need one backend only."""
    yield from _migrated_uow(f"sqlite:///{tmp_path / 'assistant-sqlite.db'}")
