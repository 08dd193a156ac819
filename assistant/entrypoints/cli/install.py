"""``assistant init`` and ``assistant db``: the settings file and the database schema."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer

from assistant.entrypoints.cli.common import (
    open_engine,
    out,
    state,
)
from config import keyfile

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@dataclass(frozen=True)
class SmtpAnswers:
    """What ``init`` needs to know about the SMTP server (None: not given)."""

    host: str | None
    port: int | None
    from_address: str | None
    tls: str | None
    username: str
    password_env: str
    password_file: str

    def asked(self) -> SmtpAnswers:
        """The same, with what is missing asked on the terminal."""
        host = typer.prompt("SMTP server", default="127.0.0.1")
        tls = typer.prompt("TLS (none, starttls, ssl)", default="starttls" if host not in
                           ("127.0.0.1", "localhost") else "none")  # fmt: skip
        port = typer.prompt("SMTP port", default={"ssl": 465, "starttls": 587}.get(tls, 25),
                            type=int)  # fmt: skip
        sender = typer.prompt("Sender address", default="assistant@localhost")
        username = typer.prompt("SMTP user name (empty: none)", default="", show_default=False)
        password_env = ""
        if username:
            password_env = typer.prompt("Environment variable holding its password",
                                        default="SMTP_PASSWORD")  # fmt: skip
        return SmtpAnswers(host, port, sender, tls, username, password_env, "")

    def problems(self) -> list[str]:
        found = []
        if self.tls not in (None, "none", "starttls", "ssl"):
            found.append(f"--smtp-tls must be none, starttls or ssl, not {self.tls!r}")
        if self.password_env and self.password_file:
            found.append("give --smtp-password-env or --smtp-password-file, not both")
        if (self.password_env or self.password_file) and not self.username:
            found.append("a password needs --smtp-username")
        return found


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string is a JSON string


def settings_text(smtp: SmtpAnswers) -> str:
    """The first assistant.toml: the data folder and what was said about SMTP."""
    problems = smtp.problems()
    if problems:
        raise typer.BadParameter("; ".join(problems))
    lines = ["# See config/example.toml for every key.", 'data_dir = "data"']
    smtp_lines = []
    if smtp.host is not None:
        smtp_lines.append(f"host = {_toml(smtp.host)}")
    if smtp.port is not None:
        smtp_lines.append(f"port = {smtp.port}")
    if smtp.from_address is not None:
        smtp_lines.append(f"from_address = {_toml(smtp.from_address)}")
    if smtp.tls == "starttls":
        smtp_lines.append("starttls = true")
    elif smtp.tls == "ssl":
        smtp_lines.append("ssl = true")
    if smtp.username:
        smtp_lines.append(f"username = {_toml(smtp.username)}")
    if smtp.password_env:
        smtp_lines.append(f"password = {{ env = {_toml(smtp.password_env)} }}")
    elif smtp.password_file:
        smtp_lines.append(f"password = {{ file = {_toml(smtp.password_file)} }}")
    if smtp_lines:
        lines += ["", "[smtp]", *smtp_lines]
    return "\n".join(lines) + "\n"


Tls = Literal["none", "starttls", "ssl"]


def init(
    directory: Annotated[
        Path, typer.Argument(help="Where to put assistant.toml and data/.")
    ] = Path("."),
    smtp_host: Annotated[
        str | None, typer.Option(help="SMTP server the assistant's mail goes through.")
    ] = None,
    smtp_port: Annotated[int | None, typer.Option(min=1, max=65535, help="SMTP port.")] = None,
    smtp_from: Annotated[
        str | None, typer.Option(help="Sender address of the service's mail.")
    ] = None,
    smtp_tls: Annotated[
        Tls | None, typer.Option(help="none, starttls (port 587) or ssl (port 465).")
    ] = None,
    smtp_username: Annotated[str, typer.Option(help="SMTP user name, if it asks for one.")] = "",
    smtp_password_env: Annotated[
        str, typer.Option(help="Environment variable holding the SMTP password.")
    ] = "",
    smtp_password_file: Annotated[
        str, typer.Option(help="File holding the SMTP password.")
    ] = "",
) -> None:
    """Create a settings file (asking for the SMTP server unless given as flags) and the
    database (SQLite by default). Secrets are written as references, never values."""
    from assistant.store.migrate import upgrade

    directory.mkdir(parents=True, exist_ok=True)
    cfg = directory / "assistant.toml"
    if not cfg.exists():
        smtp = SmtpAnswers(smtp_host, smtp_port, smtp_from, smtp_tls, smtp_username,
                           smtp_password_env, smtp_password_file)  # fmt: skip
        if smtp.host is None and sys.stdin.isatty():
            smtp = smtp.asked()
        cfg.write_text(settings_text(smtp))
        out.print(f"wrote {cfg}")
    from assistant.adapters import keys
    from config.settings import load

    settings = load(cfg)

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
