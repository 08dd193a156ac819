"""Accounts are validated with their provider's settings model when added, and read
through it when used (issue 15, point 5).

The CLI goes through its real entry point (Typer's runner on ``assistant.entrypoints.cli
.app``, a real settings file and database); the web form through the app with the
``world`` of ``tests/support/web.py``; a stored account the model refuses is reported on
the account by the sync, and the other accounts sync on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from assistant.entrypoints.cli.app import app
from assistant.services.pairs import add_account
from assistant.services.runner import sync_now
from assistant.store.tables import Account
from config.settings import NetworkSettings
from tests.support.web import World, login, world_fixture  # noqa: F401

SECRET = "hunter2-never-shown"


# ---------------------------------------------------------------------------- CLI


class Cli:
    def __init__(self, home: Path) -> None:
        self.runner = CliRunner()
        self.env = {"ASSISTANT_CONFIG": str(home / "assistant.toml"), "NO_COLOR": "1",
                    "COLUMNS": "200"}  # fmt: skip

    def __call__(self, *args: str) -> Any:
        return self.runner.invoke(app, list(args), env=self.env)

    def accounts(self) -> list[dict[str, Any]]:
        done = self("account", "list", "--json")
        assert done.exit_code == 0, done.output
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)
    run = Cli(tmp_path)
    assert run("init", str(tmp_path)).exit_code == 0
    done = run("pair", "add", "alex", "--manager", "alex@example.com",
               "--assistant", "sam@example.com")  # fmt: skip
    assert done.exit_code == 0, done.output
    return run


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--provider", "imap", "--setting", "host=imap.example.com", "--username", "a",
          "--setting", "port=99999"], "port: Input should be less than or equal to 65535"),
        (["--provider", "imap", "--setting", "host=imap.example.com", "--username", "a",
          "--setting", "port=imaps"], "port: Input should be a valid integer"),
        (["--provider", "caldav", "--url", "dav.example.com/calendars/alex/"],
         "url: not an http(s) URL"),
        (["--provider", "ews", "--setting", "mailbox=alex@example.com",
          "--setting", "service_endpoint=mail.example.com/EWS/Exchange.asmx"],
         "service_endpoint: not an http(s) URL"),
        (["--provider", "mbox", "--path", "no-such.mbox"], "path: no such file"),
        (["--provider", "maildir", "--path", "no-such-folder"], "path: no such folder"),
        (["--provider", "graph", "--setting", "user=alex@example.com",
          "--setting", "tenant=t"], "client_id: required"),
        (["--provider", "caldav", "--url", "https://dav.example.com/",
          "--setting", f"password={SECRET}"], "password: must be a reference"),
        (["--provider", "caldav", "--url", "https://dav.example.com/",
          "--setting", "usrname=alex"], "usrname: not a setting of this provider"),
    ],
)  # fmt: skip
def test_the_cli_refuses_bad_settings_with_exit_2_naming_the_field(
    cli: Cli, args: list[str], said: str
) -> None:
    done = cli("account", "add", "work", *args)
    assert done.exit_code == 2, done.output
    assert said in done.stderr
    assert done.stderr.startswith("error: settings of the ")
    assert SECRET not in done.output
    assert cli.accounts() == []  # nothing was added


def test_the_cli_stores_what_the_model_read(cli: Cli, tmp_path: Path) -> None:
    done = cli("account", "add", "inbox", "--provider", "imap", "--username", "alex",
               "--setting", "host=imap.example.com", "--setting", "port=993",
               "--setting", "security=starttls", "--password-env", "IMAP_PASSWORD")  # fmt: skip
    assert done.exit_code == 0, done.output
    (tmp_path / "mail.mbox").write_text("")
    done = cli("account", "add", "archive", "--provider", "mbox", "--path", "mail.mbox")
    assert done.exit_code == 0, done.output
    imap, mbox = cli.accounts()
    assert imap["settings"]["port"] == 993  # a number, not the text "993"
    assert imap["settings"]["security"] == "starttls"
    assert imap["settings"]["password"] == "<env reference>"
    assert mbox["settings"]["path"] == str(tmp_path / "mail.mbox")


def test_an_unknown_provider_is_a_usage_error(cli: Cli) -> None:
    done = cli("account", "add", "x", "--provider", "outlook")
    assert done.exit_code == 2
    assert "unknown provider 'outlook'" in done.stderr


# ---------------------------------------------------------------------------- web


def web_client(world: World) -> tuple[Any, str]:
    # Dovecot-like test servers sit on 127.0.0.1: the operator lists it, http allowed
    network = NetworkSettings(allow_http=True, allowed_hosts=["127.0.0.1"])
    world.svc.settings = world.svc.settings.model_copy(update={"network": network})
    client = world.client()
    return client, login(client, "alex@alpha.example")


def added(world: World, provider: str) -> list[Account]:
    with world.svc.uow.read() as s:
        rows = s.scalars(select(Account).where(Account.provider == provider))
        return [a for a in rows if not a.name.endswith("-cal")]


def test_the_web_form_shows_the_field_errors_and_keeps_what_was_typed(world: World) -> None:
    client, token = web_client(world)
    form = {"csrf_token": token, "provider": "imap", "name": "Manager mail",
            "host": "127.0.0.1", "port": "99999", "security": "ssl", "username": "alex",
            "password": SECRET}  # fmt: skip
    r = client.post(f"/pairs/{world.alpha.id}/accounts", data=form)
    assert r.status_code == 400
    page = r.text
    assert 'id="form-error"' in page and 'id="add-account"' in page  # the form, again
    assert "port: Input should be less than or equal to 65535" in page
    assert 'name="host" value="127.0.0.1"' in page and 'value="Manager mail"' in page
    assert '<option value="imap" selected>' in page
    assert SECRET not in page  # the password is typed again, never sent back
    assert added(world, "imap") == []

    r = client.post(f"/pairs/{world.alpha.id}/accounts", data=form | {"port": "993"})
    assert r.status_code == 303
    [account] = added(world, "imap")
    assert account.settings["port"] == 993 and set(account.settings["password"]) == {"encrypted"}


def test_the_web_form_names_a_bad_url_and_never_echoes_its_credentials(world: World) -> None:
    client, token = web_client(world)
    r = client.post(
        f"/pairs/{world.alpha.id}/accounts",
        data={"csrf_token": token, "provider": "caldav", "name": "Work",
              "url": f"dav.example.com/{SECRET}/"},
    )  # fmt: skip
    assert r.status_code == 400
    assert "url: not an http(s) URL" in r.text and 'id="form-error"' in r.text
    r = client.post(
        f"/pairs/{world.alpha.id}/accounts",
        data={"csrf_token": token, "provider": "caldav", "name": "Work",
              "url": f"ftp://alex:{SECRET}@dav.example.com/cal/?token={SECRET}"},
    )  # fmt: skip
    assert r.status_code == 400 and 'id="form-error"' in r.text
    assert SECRET not in r.text
    assert added(world, "caldav") == []


def test_the_web_form_lists_what_to_fill_in(world: World) -> None:
    client, token = web_client(world)
    r = client.post(
        f"/pairs/{world.alpha.id}/accounts",
        data={"csrf_token": token, "provider": "ews", "mailbox": "not-an-address"},
    )
    assert r.status_code == 400
    assert "please fill in: service endpoint, password" in r.text
    assert "mailbox: not an email address" in r.text


# ---------------------------------------------------------------- stored accounts


def test_a_stored_account_the_model_refuses_is_reported_and_the_others_sync(
    world: World,
) -> None:
    feed = world.tmp / "feed.ics"
    feed.write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nEND:VCALENDAR\r\n")
    good = add_account(world.svc, pair=world.alpha.id, name="feed", provider="ics",
                       settings={"location": str(feed)})  # fmt: skip
    with world.svc.uow.begin() as s:  # stored long ago, with a key no model knows
        bad = s.scalars(select(Account).where(Account.name == "alpha-cal")).one()
        assert bad.settings.keys() >= {"url"}  # an ICS feed's address is its "location"
        bad_id = bad.id

    rows = {r["account"]: r for r in sync_now(world.svc, pair=world.alpha.id, send=False).to_json()}

    refused = rows[f"{bad_id} alpha-cal"]
    assert refused["error"] == (
        "settings of the ics account: location: required; url: not a setting of this provider"
    )
    assert "error" not in rows[f"{good.id} feed"]
    with world.svc.uow.read() as s:
        stored = s.get(Account, bad_id)
        assert stored is not None and stored.state == "error"
        assert stored.last_error == refused["error"]
        fine = s.get(Account, good.id)
        assert fine is not None and fine.state == "ok"
