"""Accounts are tried at once, edited, disabled and removed, from the CLI and the web
Accounts page, whose add form shows only the chosen provider's fields and whose greyed
Connect buttons say what is missing (issue 15, point 5).

The CLI goes through its real entry point (Typer's runner on ``assistant.entrypoints.cli
.app``, a real settings file and database); the web through the app with the ``world``
of ``tests/support/web.py``, in English and Russian.
"""

from __future__ import annotations

import html
import json
import re
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from assistant.bootstrap import Service, build
from assistant.entrypoints.cli.app import main
from assistant.services.accounts import save_form_account
from assistant.services.pairs import add_account
from assistant.services.polling import accounts_due
from assistant.services.runner import sync_now
from assistant.store.tables import Account, Checkpoint, EventSnapshot
from config.settings import GoogleOAuthSettings, NetworkSettings, load
from tests.support.web import World, login, world_fixture  # noqa: F401

TOMORROW = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y%m%dT100000Z")
FEED = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:one@t\r\n"
    f"DTSTAMP:20261124T090000Z\r\nDTSTART:{TOMORROW}\r\nDURATION:PT1H\r\n"
    "SUMMARY:Board\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


# ---------------------------------------------------------------------------- CLI


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def entry(args: tuple[str, ...]) -> None:
    """``assistant``'s real entry point (``app.main``: its exit codes, its error lines)."""
    sys.exit(main(list(args)))


class Cli:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.runner = CliRunner()
        self.env = {"ASSISTANT_CONFIG": str(home / "assistant.toml"), "NO_COLOR": "1",
                    "COLUMNS": "200"}  # fmt: skip

    def __call__(self, *args: str) -> Any:
        return self.runner.invoke(entry, list(args), env=self.env)

    def accounts(self) -> list[dict[str, Any]]:
        done = self("account", "list", "--json")
        assert done.exit_code == 0, done.output
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows

    def service(self) -> Service:
        return build(load(self.home / "assistant.toml"))


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)
    run = Cli(tmp_path)
    assert run("init", str(tmp_path)).exit_code == 0
    done = run("pair", "add", "alex", "--manager", "alex@example.com",
               "--assistant", "sam@example.com")  # fmt: skip
    assert done.exit_code == 0, done.output
    (tmp_path / "feed.ics").write_text(FEED)
    return run


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


def test_add_check_says_whether_the_account_works_and_keeps_a_failing_one(cli: Cli) -> None:
    done = cli("account", "add", "feed", "--provider", "ics", "--path", "feed.ics", "--check")
    assert done.exit_code == 0, done.output
    assert "✓ The connection works." in done.stdout

    url = f"http://127.0.0.1:{closed_port()}/cal/"
    done = cli("account", "add", "work", "--provider", "caldav", "--url", url, "--check")
    assert done.exit_code == 1, done.output
    assert "✗ it does not work yet: Could not reach the server" in done.stderr
    assert "assistant account edit 2" in done.stderr  # how to mend it
    [_, work] = cli.accounts()
    assert work["name"] == "work" and work["state"] == "error"  # added, and says why


def test_edit_is_checked_by_the_provider_model_and_unparks(cli: Cli) -> None:
    done = cli("account", "add", "inbox", "--provider", "imap", "--username", "alex",
               "--setting", "host=imap.example.com", "--setting", "security=starttls",
               "--password-env", "IMAP_PASSWORD")  # fmt: skip
    assert done.exit_code == 0, done.output
    svc = cli.service()
    with svc.uow.begin() as s:  # its password was refused: parked until it changes
        s.get_one(Account, 1).parked_reason = "credentials"

    done = cli("account", "edit", "1", "--set", "port=imaps")
    assert done.exit_code == 2
    assert "port: Input should be a valid integer" in done.stderr
    done = cli("account", "edit", "1", "--set", "password=hunter2")
    assert done.exit_code == 2 and "password: must be a reference" in done.stderr
    done = cli("account", "edit", "1", "--set", "colour=red")
    assert done.exit_code == 2 and "colour: not a setting of this provider" in done.stderr

    done = cli("account", "edit", "1", "--set", "port=995", "--set", "security=",
               "--secret", "password=file:/run/secrets/imap", "--name", "Mail")  # fmt: skip
    assert done.exit_code == 0, done.output
    [row] = cli.accounts()
    assert row["name"] == "Mail" and row["settings"]["port"] == 995  # a number
    assert "security" not in row["settings"]  # removed: the default (ssl) again
    assert row["settings"]["password"] == "<file reference>"
    with svc.uow.read() as s:
        assert s.get_one(Account, 1).parked_reason == ""  # tried again at the next poll
    svc.engine.dispose()


def test_disable_stops_syncing_and_polling_and_enable_resumes(cli: Cli) -> None:
    assert cli("account", "add", "feed", "--provider", "ics", "--path", "feed.ics").exit_code == 0
    done = cli("account", "disable", "1")
    assert done.exit_code == 0 and "disabled" in done.stdout
    [row] = cli.accounts()
    assert row["state"] == "disabled" and row["disabled"] is True
    listed = cli("account", "list")
    assert "disabled" in listed.stdout

    done = cli("sync", "--json")
    [line] = [r for r in json.loads(done.stdout) if r["kind"] == "calendar"]
    assert "not tried: disabled" in line["summary"]
    svc = cli.service()
    assert accounts_due(svc.uow, svc.now(), 60) == ()  # the poller skips it too
    doctor = cli("doctor")
    assert "disabled: not synced or checked (`assistant account enable 1`)" in doctor.stdout

    assert cli("account", "enable", "1").exit_code == 0
    assert accounts_due(svc.uow, svc.now(), 60) == (1,)
    done = cli("sync", "--json")
    [line] = [r for r in json.loads(done.stdout) if r["kind"] == "calendar"]
    assert line["summary"] == "baseline: 1 event"
    svc.engine.dispose()


def test_remove_asks_first_and_takes_the_snapshots_with_it(cli: Cli) -> None:
    assert cli("account", "add", "feed", "--provider", "ics", "--path", "feed.ics").exit_code == 0
    assert cli("sync").exit_code == 0
    svc = cli.service()
    with svc.uow.read() as s:
        assert s.scalar(select(func.count(EventSnapshot.id))) == 1

    done = cli("account", "remove", "1")  # no terminal to ask on: refused
    assert done.exit_code == 1 and "add --yes" in done.output
    assert len(cli.accounts()) == 1

    done = cli("account", "remove", "1", "--yes")
    assert done.exit_code == 0, done.output
    assert "account 1 (feed) removed" in done.stdout
    assert cli.accounts() == []
    with svc.uow.read() as s:
        assert s.scalar(select(func.count(EventSnapshot.id))) == 0
    assert cli("account", "remove", "1", "--yes").exit_code == 1  # no such account
    svc.engine.dispose()


# ---------------------------------------------------------------------------- web


@pytest.fixture
def web(world: World) -> tuple[Any, str]:
    network = NetworkSettings(allow_http=True, allowed_hosts=["127.0.0.1"])
    world.svc.settings = world.svc.settings.model_copy(update={"network": network})
    client = world.client()
    return client, login(client, "alex@alpha.example")


def in_russian(client: Any, token: str) -> None:
    r = client.post("/me/locale", data={"csrf_token": token, "locale": "ru", "next": "/"})
    assert r.status_code in (200, 303)


def field_names(page: str, form_id: str) -> set[str]:
    form = re.search(rf'<form[^>]*id="{form_id}".*?</form>', page, re.S)
    assert form, page
    return set(re.findall(r'name="([a-z_]+)"', form.group(0))) - {"csrf_token", "provider"}


def world_account(world: World, name: str = "alpha-cal") -> Account:
    with world.svc.uow.read() as s:
        return s.scalars(select(Account).where(Account.name == name)).one()


def imap_account(world: World) -> int:
    """An IMAP account as the web form adds it (a user's: its password sealed)."""
    return save_form_account(world.svc, world.alpha.id, "imap", {
        "name": "Inbox", "host": "127.0.0.1", "port": "993", "security": "ssl",
        "username": "alex", "password": "pw"})  # fmt: skip


def test_the_add_form_shows_only_the_chosen_providers_fields(
    world: World, web: tuple[Any, str]
) -> None:
    client, _ = web
    base = f"/pairs/{world.alpha.id}/accounts"
    page = client.get(base).text
    assert 'id="choose-provider"' in page and 'id="add-account"' not in page  # first: choose
    imap = client.get(base + "?provider=imap").text
    assert field_names(imap, "add-account") == {
        "name", "host", "port", "security", "username", "password"}  # fmt: skip
    assert '<option value="imap" selected>' in imap
    caldav = client.get(base + "?provider=caldav").text
    assert field_names(caldav, "add-account") == {"name", "url", "username", "password"}
    ews = client.get(base + "?provider=ews-mail").text
    assert field_names(ews, "add-account") == {
        "name", "mailbox", "service_endpoint", "username", "password"}  # fmt: skip
    assert 'id="add-account"' not in client.get(base + "?provider=maildir").text


@pytest.mark.parametrize(
    ("locale", "google", "https"),
    [("en", "Google sign-in is not set up", "Sign-in needs the app's https:// address"),
     ("ru", "Вход через Google не настроен", "Для входа нужен https-адрес приложения")],
)  # fmt: skip
def test_greyed_connect_buttons_say_what_is_missing(
    world: World, web: tuple[Any, str], locale: str, google: str, https: str
) -> None:
    client, token = web
    if locale == "ru":
        in_russian(client, token)
    page = client.get(f"/pairs/{world.alpha.id}/accounts").text
    for flow in ("google", "microsoft"):
        form = re.search(rf'<form[^>]*id="connect-{flow}".*?</form>', page, re.S)
        assert form is not None
        assert re.search(r"<button disabled", form.group(0)), flow
        assert f'id="why-{flow}"' in form.group(0)
    why = re.search(r'id="why-google">(.*?)</p>', page, re.S)
    assert why is not None
    said = html.unescape(why.group(1))
    assert google in said and https in said

    oauth = world.svc.settings.oauth.model_copy(
        update={"google": GoogleOAuthSettings(client_id="id.apps.example")}
    )
    world.svc.settings = world.svc.settings.model_copy(update={"oauth": oauth})
    world.app(public_url="https://assistant.example.com")
    page = client.get(f"/pairs/{world.alpha.id}/accounts").text
    form = re.search(r'<form[^>]*id="connect-google".*?</form>', page, re.S)
    assert form is not None and "disabled" not in form.group(0)
    assert 'id="why-microsoft"' in page  # Microsoft still lacks its client


@pytest.mark.parametrize("locale", ["en", "ru"])
def test_the_web_edits_an_account_with_the_same_checks(
    world: World, web: tuple[Any, str], locale: str
) -> None:
    client, token = web
    if locale == "ru":
        in_russian(client, token)
    account_id = imap_account(world)
    with world.svc.uow.begin() as s:
        s.get_one(Account, account_id).parked_reason = "credentials"
    url = f"/pairs/{world.alpha.id}/accounts/{account_id}/edit"
    page = client.get(url).text
    assert ("Изменить учётную запись" if locale == "ru" else "Edit account") in page
    assert field_names(page, "edit-account") == {
        "name", "host", "port", "security", "username", "password"}  # fmt: skip
    assert 'name="port" value="993"' in page

    form = {"csrf_token": token, "name": "Inbox", "host": "127.0.0.1", "port": "99999",
            "security": "ssl", "username": "alex", "password": ""}  # fmt: skip
    r = client.post(url, data=form)
    assert r.status_code == 400
    assert "port: Input should be less than or equal to 65535" in r.text
    assert client.post(url, data=form | {"csrf_token": "forged", "port": "143"}).status_code == 403

    r = client.post(url, data=form | {"port": "143", "security": "starttls", "name": "Mail"})
    assert r.status_code == 303 and "note=n_edited" in r.headers["location"]
    with world.svc.uow.read() as s:
        row = s.get_one(Account, account_id)
        assert row.name == "Mail" and row.settings["port"] == 143
        assert row.settings["security"] == "starttls"
        assert set(row.settings["password"]) == {"encrypted"}  # kept: the field was empty
        assert row.parked_reason == ""  # edited: tried again at the next poll


def test_the_web_may_not_repoint_an_account_the_operator_added(
    world: World, web: tuple[Any, str]
) -> None:
    from assistant.services.account_edits import edit_account
    from assistant.services.accounts import net_policy

    client, token = web
    account = add_account(world.svc, pair=world.alpha.id, name="Work", provider="caldav",
                          settings={"url": "http://10.0.0.5/cal/"})  # fmt: skip
    url = f"/pairs/{world.alpha.id}/accounts/{account.id}/edit"
    page = client.get(url).text
    assert field_names(page, "edit-account") == {"name", "password"}
    assert 'id="edit-elsewhere"' in page
    r = client.post(url, data={"csrf_token": token, "name": "Work",
                               "url": "http://10.0.0.6/other/", "password": "new"})  # fmt: skip
    assert r.status_code == 303
    stored = world_account(world, "Work").settings
    assert stored["url"] == "http://10.0.0.5/cal/" and set(stored["password"]) == {"encrypted"}
    with pytest.raises(ValueError, match="changed with `assistant account edit`"):
        edit_account(world.svc, account.id, {"url": "http://10.0.0.6/other/"},
                     guard=net_policy(world.svc.settings))  # fmt: skip


@pytest.mark.parametrize(("locale", "badge"), [("en", "disabled"), ("ru", "отключена")])
def test_the_web_disables_and_enables_an_account(
    world: World, web: tuple[Any, str], locale: str, badge: str
) -> None:
    client, token = web
    if locale == "ru":
        in_russian(client, token)
    account = world_account(world)
    base = f"/pairs/{world.alpha.id}/accounts"
    assert client.post(f"{base}/{account.id}/disable", data={}).status_code == 403  # no CSRF
    r = client.post(f"{base}/{account.id}/disable", data={"csrf_token": token})
    assert r.status_code == 303 and "note=n_disabled" in r.headers["location"]
    page = client.get(base).text
    row = re.search(rf'<tr id="account-{account.id}".*?</tr>', page, re.S)
    assert row is not None and f'<span class="badge off">{badge}</span>' in row.group(0)
    assert f'action="{base}/{account.id}/enable"' in row.group(0)
    lines = sync_now(world.svc, pair=world.alpha.id, send=False).to_json()
    [line] = [x for x in lines if x["account"] == f"{account.id} alpha-cal"]
    assert "not tried: disabled" in str(line["summary"])

    r = client.post(f"{base}/{account.id}/enable", data={"csrf_token": token})
    assert r.status_code == 303
    assert not world_account(world).disabled


@pytest.mark.parametrize(("locale", "warning"), [
    ("en", "Delegated tasks wrote 1 checkpoint event(s) into this calendar"),
    ("ru", "Делегированные задачи записали в этот календарь контрольных точек: 1"),
])  # fmt: skip
def test_the_web_removes_an_account_after_a_confirm_step(
    world: World, web: tuple[Any, str], locale: str, warning: str
) -> None:
    client, token = web
    if locale == "ru":
        in_russian(client, token)
    account = world_account(world)
    with world.svc.uow.begin() as s:  # the delegated task's Red Line, written into it
        [red_line] = s.scalars(
            select(Checkpoint).where(
                Checkpoint.task_id == world.alpha.task_id, Checkpoint.kind == "red_line"
            )
        )
        red_line.account_id, red_line.state = account.id, "written"
        red_line.written_at = world.clock.now
        checkpoint_id = red_line.id
    from assistant.services.account_edits import AccountInUse, remove_account

    with pytest.raises(AccountInUse):  # the service refuses unless told it was confirmed
        remove_account(world.svc, account.id)

    url = f"/pairs/{world.alpha.id}/accounts/{account.id}/remove"
    page = client.get(url).text
    assert 'id="remove-account"' in page and warning in page
    assert client.post(url, data={"csrf_token": "forged"}).status_code == 403
    assert world_account(world).id == account.id

    r = client.post(url, data={"csrf_token": token})
    assert r.status_code == 303 and "note=n_removed" in r.headers["location"]
    with world.svc.uow.read() as s:
        assert s.get(Account, account.id) is None
        assert s.scalar(select(func.count(EventSnapshot.id)).where(
            EventSnapshot.account_id == account.id)) == 0  # fmt: skip
        assert s.get_one(Checkpoint, checkpoint_id).account_id is None  # the row stays
    # another pair's account is out of reach
    other = world_account(world, "bravo-cal")
    r = client.post(f"/pairs/{world.alpha.id}/accounts/{other.id}/remove",
                    data={"csrf_token": token})  # fmt: skip
    assert r.status_code == 404
    assert world_account(world, "bravo-cal").id == other.id


def test_the_account_pages_in_russian_have_no_english_word(
    world: World, web: tuple[Any, str]
) -> None:
    from tests.integration.test_russian_pages import english_words, text_nodes

    client, token = web
    in_russian(client, token)
    account_id = imap_account(world)
    base = f"/pairs/{world.alpha.id}/accounts"
    english = english_words()
    for path in (base, f"{base}?provider=ews", f"{base}/{account_id}/edit",
                 f"{base}/{account_id}/remove", f"{base}/{world_account(world).id}/edit"):  # fmt: skip
        page = client.get(path)
        assert page.status_code == 200, path
        left = [n for n in text_nodes(page.text) if n.rstrip(":").strip() in english]
        assert left == [], path
