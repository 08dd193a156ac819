"""Secrets and files: a private data folder, a key that is never silently replaced, rotation.

Through the real ``assistant`` command (a process, a config file, a SQLite database). The
secrets are sealed as the web app seals a typed password (``Keyring.seal`` with the app's key)
and stored through the service's ``add_account``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from assistant.services.feedback import feedback_link, open_link
from assistant.services.pairs import add_account
from assistant.store.db import UnitOfWork, make_engine
from assistant.store.tables import Account
from config.sealed import Keyring, UnreadableSecret
from config.settings import Settings, load
from tests.e2e.test_cli import Cli, command
from tests.support.deps import deps_for

NOW = datetime.now(UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """Files made by the command would be world-readable unless it sets their mode."""
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.fixture
def cli(tmp_path: Path, loose_umask: None) -> Cli:
    c = Cli(tmp_path)
    c("init", str(tmp_path))
    c("pair", "add", "alex", "--manager", "alex@example.com", "--assistant", "sam@example.com")
    return c


def settings_of(c: Cli) -> Settings:
    return load(c.home / "assistant.toml")


def seal_password(c: Cli, name: str, password: str) -> int:
    """Store an account whose password is sealed with the app's key (as the web form does)."""
    settings = settings_of(c)
    key = (settings.data_dir / "secret.key").read_text().strip()
    engine = make_engine(settings.database_url)
    try:
        account = add_account(
            deps_for(UnitOfWork(engine), NOW), pair="alex", name=name, provider="imap",
            settings={"host": "imap.example.com", "username": "alex",
                      "password": Keyring([key]).seal(password)},
        )  # fmt: skip
    finally:
        engine.dispose()
    return account.id


def stored_tokens(c: Cli) -> dict[int, str]:
    settings = settings_of(c)
    engine = make_engine(settings.database_url)
    try:
        with UnitOfWork(engine).read() as s:
            return {a.id: a.settings["password"]["encrypted"] for a in s.query(Account)
                    if isinstance(a.settings.get("password"), dict)}  # fmt: skip
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------- files


def test_the_data_folder_database_and_key_are_private(cli: Cli) -> None:
    data = cli.home / "data"
    key, db = data / "secret.key", data / "assistant.db"
    assert mode(data) == 0o700
    assert mode(key) == 0o600, "made by init, once"
    assert mode(db) == 0o600
    for extra in data.glob("assistant.db-*"):
        assert mode(extra) == 0o600, extra.name


def test_files_left_readable_by_an_older_version_are_tightened_at_start(cli: Cli) -> None:
    data = cli.home / "data"
    data.chmod(0o755)
    for f in data.iterdir():
        f.chmod(0o644)
    cli("pair", "list")
    assert mode(data) == 0o700
    for f in data.iterdir():
        assert mode(f) == 0o600, f.name


def test_a_new_install_makes_its_key_once(cli: Cli) -> None:
    key = cli.home / "data" / "secret.key"
    first = key.read_text()
    assert len(first.strip()) >= 32
    cli("pair", "list")
    cli("account", "list")
    assert key.read_text() == first


# ---------------------------------------------------------------------------- the key


def test_a_deleted_key_with_sealed_secrets_stops_start_up(cli: Cli) -> None:
    seal_password(cli, "mail", "hunter2 imap password")
    key = cli.home / "data" / "secret.key"
    saved = key.read_text()
    key.unlink()
    message = cli.fails("pair", "list")
    assert "secret.key is missing" in message and "1 sealed secret" in message
    assert "Restore the file from a backup" in message and "assistant keys reset" in message
    assert not key.exists(), "no new key is made behind the operator's back"
    # `assistant run` stops the same way, before serving anything.
    done = cli("run", "--port", "0", ok=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "secret.key is missing" in done.stderr
    assert not key.exists()
    # Restored from the backup: everything works again.
    key.write_text(saved)
    cli("pair", "list")


def test_a_different_key_with_sealed_secrets_stops_start_up(cli: Cli) -> None:
    account_id = seal_password(cli, "mail", "hunter2 imap password")
    key = cli.home / "data" / "secret.key"
    saved = key.read_text()
    key.write_text("another key altogether, from another install")
    message = cli.fails("account", "list")
    assert "does not open 1 of 1 sealed secrets" in message and f"account {account_id}" in message
    assert "hunter2" not in message
    key.write_text(saved)
    cli("account", "list")


def test_without_the_old_key_reset_removes_what_it_cannot_open(cli: Cli) -> None:
    account_id = seal_password(cli, "mail", "hunter2 imap password")
    key = cli.home / "data" / "secret.key"
    key.unlink()
    cli.fails("keys", "reset")  # asks for --yes
    report = cli.json("keys", "reset", "--yes")
    assert report == {"dropped_secrets": 1, "accounts_to_reconnect": [account_id], "new_key": True}
    assert mode(key) == 0o600
    [account] = cli.json("account", "list")  # type: ignore[misc]
    assert account["state"] == "error" and "reconnect" in account["last_error"]
    assert "password" not in account["settings"]


# ------------------------------------------------------------------------------ rotate


def test_rotate_reseals_every_secret_with_a_new_key_and_keeps_links_working(cli: Cli) -> None:
    a = seal_password(cli, "mail", "first password")
    b = seal_password(cli, "calendar", "second password")
    settings = settings_of(cli)
    key = cli.home / "data" / "secret.key"
    old_key = key.read_text().strip()
    link = feedback_link(settings, 7, NOW + timedelta(days=3), "dead_line", "alex@example.com")
    before = stored_tokens(cli)

    report = cli.json("keys", "rotate")
    assert report["resealed"] == 2 and report["accounts"] == 2  # type: ignore[index]
    assert report["retired_keys"] == 1  # type: ignore[index]
    new_key = key.read_text().strip()
    assert new_key != old_key
    assert mode(key) == 0o600 and mode(cli.home / "data" / "secret.key.retired") == 0o600
    after = stored_tokens(cli)
    assert set(after) == {a, b} and all(after[i] != before[i] for i in after)
    alone = Keyring([new_key])  # the new key alone opens every secret
    assert {alone.open(t) for t in after.values()} == {"first password", "second password"}
    with pytest.raises(UnreadableSecret):
        Keyring([old_key]).open(after[a])
    # A link sent before the rotation still opens (the retired key verifies it) ...
    assert open_link(settings_of(cli), link.rsplit("/", 1)[1], NOW).task_id == 7
    # ... new links are signed with the new key, and the service starts normally.
    fresh = feedback_link(settings_of(cli), 8, NOW + timedelta(days=3), "dead_line", "a@b.c")
    assert open_link(settings_of(cli), fresh.rsplit("/", 1)[1], NOW).task_id == 8
    cli("account", "list")
    shown = cli.json("keys", "show")
    assert shown["sealed_secrets"] == 2 and shown["retired_keys"] == 1  # type: ignore[index]


def test_rotate_with_a_secret_it_cannot_open_changes_nothing(cli: Cli) -> None:
    seal_password(cli, "mail", "first password")
    settings = settings_of(cli)
    engine = make_engine(settings.database_url)
    try:
        add_account(deps_for(UnitOfWork(engine), NOW), pair="alex", name="stray", provider="imap",
                    settings={"host": "h", "password": Keyring(["some other key, long enough"])
                              .seal("x")})  # fmt: skip
    finally:
        engine.dispose()
    key = cli.home / "data" / "secret.key"
    old = key.read_text()
    tokens = stored_tokens(cli)
    message = cli.fails("keys", "rotate")
    assert "cannot be sealed again; nothing was changed" in message
    assert key.read_text() == old and stored_tokens(cli) == tokens


def test_keys_show_names_the_key_without_revealing_it(cli: Cli) -> None:
    seal_password(cli, "mail", "first password")
    key = (cli.home / "data" / "secret.key").read_text().strip()
    done = subprocess.run([*command(), "keys", "show", "--json"], env=cli.env, capture_output=True,
                          text=True, timeout=60, cwd=cli.home, check=True)  # fmt: skip
    shown = json.loads(done.stdout)
    assert shown["sealed_secrets"] == 1 and shown["source"].endswith("secret.key")
    assert len(shown["key"]) == 12 and key not in done.stdout and shown["key"] not in key


def test_a_lost_key_with_feedback_links_already_sent_stops_start_up(cli: Cli) -> None:
    from sqlalchemy import select, update

    from assistant.bootstrap import build
    from assistant.services.feedback import send_prompt
    from assistant.store.tables import Checkpoint

    deadline = (datetime.now(UTC) + timedelta(days=5)).strftime("%Y-%m-%dT17:00")
    cli("task", "add", "Board pack", "--deadline", deadline, "--pair", "alex")
    svc = build(settings_of(cli))
    try:
        with svc.uow.begin() as s:  # as if written to the manager's calendar, then due
            s.execute(update(Checkpoint).where(Checkpoint.start_at.is_not(None))
                      .values(state="written"))  # fmt: skip
            dead = s.scalars(select(Checkpoint).where(Checkpoint.kind == "dead_line")).one()
        assert send_prompt(svc, dead.id), "the prompt with its signed link is queued"
    finally:
        svc.engine.dispose()
    key = cli.home / "data" / "secret.key"
    saved = key.read_text()
    key.unlink()
    message = cli.fails("task", "list")
    assert "secret.key is missing" in message and "1 feedback link(s) already sent" in message
    assert not key.exists()
    key.write_text("another key altogether, from another install")
    assert "did not sign the 1 feedback links already sent" in cli.fails("task", "list")
    key.write_text(saved)
    cli("task", "list")


def test_a_key_given_in_the_settings_is_checked_and_resealed_after_a_change(cli: Cli) -> None:
    old, new = "the operator's old key, long enough", "the operator's new key, long enough"
    config = cli.home / "assistant.toml"
    base = config.read_text()
    config.write_text(base + '[web]\nsecret_key = { env = "APP_KEY" }\n')
    cli.env["APP_KEY"] = old
    settings = settings_of(cli)
    engine = make_engine(settings.database_url)
    try:
        add_account(deps_for(UnitOfWork(engine), NOW), pair="alex", name="mail", provider="imap",
                    settings={"host": "h", "password": Keyring([old]).seal("pw")})  # fmt: skip
    finally:
        engine.dispose()
    cli("account", "list")
    cli.env["APP_KEY"] = new  # changed in the settings, the old one not kept
    message = cli.fails("account", "list")
    assert "(web.secret_key) does not open 1 of 1 sealed secrets" in message
    assert "web.secret_key in the settings" in cli.fails("keys", "rotate")
    # The documented way: the old key listed as previous, then reseal.
    config.write_text(base + '[web]\nsecret_key = { env = "APP_KEY" }\n'
                      'previous_secret_keys = [{ env = "OLD_APP_KEY" }]\n')  # fmt: skip
    cli.env["OLD_APP_KEY"] = old
    assert cli.json("keys", "reseal")["resealed"] == 1  # type: ignore[index]
    [token] = stored_tokens(cli).values()
    assert Keyring([new]).open(token) == "pw"
    config.write_text(base + '[web]\nsecret_key = { env = "APP_KEY" }\n')  # old key dropped
    cli("account", "list")


def test_a_running_service_opens_secrets_resealed_by_a_rotation_elsewhere(cli: Cli) -> None:
    from assistant.bootstrap import build
    from config import sealed
    from connectors.settings import secret

    account_id = seal_password(cli, "mail", "first password")
    svc = build(settings_of(cli))  # the running service: its keyring holds the old key
    try:
        cli("keys", "rotate")
        token = stored_tokens(cli)[account_id]
        assert secret({"encrypted": token}) == "first password"
    finally:
        svc.engine.dispose()
        sealed.install(None)


def test_sqlite_makes_its_database_wal_and_shm_private(tmp_path: Path, loose_umask: None) -> None:
    from sqlalchemy import text

    engine = make_engine(f"sqlite:///{tmp_path / 'new' / 'assistant.db'}")
    try:
        with engine.begin() as c:
            c.execute(text("create table t (a int)"))
        with engine.connect() as c:  # open: the -wal and -shm files exist now
            c.execute(text("select * from t")).all()
            names = sorted(p.name for p in (tmp_path / "new").iterdir())
            assert names == ["assistant.db", "assistant.db-shm", "assistant.db-wal"]
            assert {mode(tmp_path / "new" / n) for n in names} == {0o600}
        assert mode(tmp_path / "new") == 0o700
    finally:
        engine.dispose()
