"""``assistant init`` and ``assistant db``: the settings file and the database schema."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from assistant.entrypoints.cli.common import (
    open_engine,
    out,
    state,
)
from config import keyfile
from config.settings import load

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


def init(
    directory: Annotated[
        Path, typer.Argument(help="Where to put assistant.toml and data/.")
    ] = Path("."),
) -> None:
    """Create a settings file and the database (SQLite by default)."""
    from assistant.store.migrate import upgrade

    directory.mkdir(parents=True, exist_ok=True)
    cfg = directory / "assistant.toml"
    if not cfg.exists():
        cfg.write_text('# See config/example.toml for every key.\ndata_dir = "data"\n')
        out.print(f"wrote {cfg}")
    settings = load(cfg)
    from assistant.adapters import keys

    keyfile.private_dir(settings.data_dir)  # 0700: the database and the key live here
    upgrade(settings.database_url)
    keyfile.tighten(settings)
    with open_engine(settings) as engine:
        keys.check(settings, engine, datetime.now(UTC))  # makes the key once, on a new install
    out.print(f"database ready: {settings.database_url}")
    out.print(
        f"next: `assistant pair add` in {cfg.parent.resolve()} (it reads {cfg.name} there);"
        f" elsewhere, export ASSISTANT_CONFIG={cfg.resolve()}",
        soft_wrap=True,
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply the database migrations."""
    from assistant.store.migrate import current, upgrade

    url = state.settings.database_url
    upgrade(url, revision)
    out.print(f"database at revision {current(url)}")
