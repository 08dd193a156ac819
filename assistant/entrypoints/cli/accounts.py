"""``assistant account``: calendar and mailbox accounts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from assistant.bootstrap import Service
    from connectors.settings import AccountSettings

from assistant.entrypoints.cli.common import (
    JsonOpt,
    PairOpt,
    UserError,
    emit,
    err,
    out,
    pair_zones,
    service,
    table,
)

account_app = typer.Typer(help="Calendar and mailbox accounts.", no_args_is_help=True)


@account_app.command("add")
def account_add(
    name: Annotated[str, typer.Argument(help="A name for the account, e.g. work-calendar.")],
    provider: Annotated[
        str,
        typer.Option(
            help="ics, caldav, ews, graph, google (calendars); imap, gmail, ews-mail, "
            "graph-mail, maildir, mbox (mailboxes)."
        ),
    ],
    pair: PairOpt = None,
    url: Annotated[str, typer.Option(help="Calendar URL (caldav, ics).")] = "",
    path: Annotated[str, typer.Option(help="File or folder (ics file, maildir, mbox).")] = "",
    username: Annotated[str, typer.Option(help="User name for the server.")] = "",
    password_env: Annotated[
        str, typer.Option(help="Read the password from this env variable.")
    ] = "",
    password_file: Annotated[str, typer.Option(help="Read the password from this file.")] = "",
    password_command: Annotated[str, typer.Option(help="Run this to print the password.")] = "",
    setting: Annotated[
        list[str] | None,
        typer.Option(
            help="Any other setting as key=value (repeatable), e.g. mailbox=a@b.c, "
            "service_endpoint=https://..., tenant=..., user=..., host=..."
        ),
    ] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            help="A secret setting by reference, key=env:VAR | key=file:PATH | "
            "key=command:CMD (repeatable), e.g. refresh_token=env:GRAPH_TOKEN"
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Try the connection at once; exit 1 if it does not work (the account "
            "stays added: fix it with `account edit`, or `account remove` it).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Connect a calendar or mailbox. Secrets are stored as references, never values.

    See README "Providers" for the settings each provider needs."""
    from assistant.services.pairs import add_account

    conf: dict[str, Any] = {}
    if provider == "ics":
        conf["location"] = url or path
        if not conf["location"]:
            raise UserError("an ics account needs --url or --path")
    elif provider == "caldav":
        if not url:
            raise UserError("a caldav account needs --url (the calendar collection)")
        conf["url"] = url
    elif provider in ("maildir", "mbox"):
        if not path:
            raise UserError(f"a {provider} account needs --path")
        conf["path"] = str(Path(path).expanduser().resolve())
    if username:
        conf["username"] = username
    refs = {"env": password_env, "file": password_file, "command": password_command}
    given = {k: v for k, v in refs.items() if v}
    if len(given) > 1:
        raise UserError("give at most one of --password-env, --password-file, --password-command")
    if given:
        conf["password"] = given
    conf |= settings_given(setting)
    conf |= secrets_given(secret)
    checked(provider, conf)  # before anything is opened or created
    with service() as svc:
        from assistant.services.accounts import keyring_for, seal_url_credentials

        url_password = seal_url_credentials(svc.settings, provider, conf)  # sealed, not stored
        if url_password and "password" not in conf:
            conf["password"] = keyring_for(svc.settings).seal(url_password)
        account = add_account(
            svc, pair=pair, name=name, provider=provider,
            settings=checked(provider, conf).stored(),
        )  # fmt: skip
        tried = try_account(svc, account.pair_id, account.id) if check else None
    added = f"account {account.id} ({account.name}, {account.kind} via {provider}) added"
    if as_json:
        emit({"id": account.id, "name": account.name, "kind": account.kind}
             | ({"check": {"ok": tried.ok, "reason": tried.reason}} if tried else {}))  # fmt: skip
    else:
        out.print(added)
        if tried is not None:
            tried.show(account.id)
    if tried is not None and not tried.ok:
        raise typer.Exit(1)


@dataclass(frozen=True, slots=True)
class Tried:
    ok: bool
    reason: str  # in plain words: what the check found, and the server's error if any

    def show(self, account_id: int) -> None:
        if self.ok:
            out.print(f"✓ {self.reason}", highlight=False)
        else:
            err.print(f"✗ it does not work yet: {self.reason}", highlight=False, markup=False,
                      soft_wrap=True)  # fmt: skip
            err.print(f"  fix it with `assistant account edit {account_id} --set key=value`, "
                      f"or remove it with `assistant account remove {account_id}`",
                      highlight=False, markup=False)  # fmt: skip


def try_account(svc: Service, pair_id: int, account_id: int) -> Tried:
    """The connection check of doctor and the web's Check button, once, in words."""
    from assistant.entrypoints.web.i18n import translator
    from assistant.services.accounts import account_of_pair, check_account
    from connectors.netguard import redact_text

    result = check_account(svc, pair_id, account_id)
    reason = translator("en")(result.note)
    if not result.ok:
        error = redact_text(account_of_pair(svc, pair_id, account_id).last_error)
        if error:
            reason += f" ({error.splitlines()[0][:300]})"
    return Tried(result.ok, reason)


def settings_given(items: list[str] | None) -> dict[str, Any]:
    conf: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--setting {item!r}: write key=value")
        conf[key.strip()] = value
    return conf


def secrets_given(items: list[str] | None) -> dict[str, Any]:
    conf: dict[str, Any] = {}
    for item in items or []:
        key, sep, ref = item.partition("=")
        kind, sep2, target = ref.partition(":")
        if not sep or not sep2 or kind not in ("env", "file", "command") or not target:
            raise UserError(
                f"--secret {item!r}: write key=env:VAR, key=file:PATH or key=command:CMD"
            )
        conf[key.strip()] = {kind: target}
    return conf


def checked(provider: str, conf: dict[str, Any]) -> AccountSettings:
    """``conf`` read through the provider's settings model, as the operator adds it (files
    must exist); a refusal names each field and ends the command with exit 2."""
    from connectors.registry import UnknownProvider, read_settings
    from connectors.settings import Adding, InvalidSettings

    try:
        return read_settings(provider, conf, Adding())
    except (InvalidSettings, UnknownProvider) as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


@account_app.command("list")
def account_list(pair: PairOpt = None, as_json: JsonOpt = False) -> None:
    """List accounts with their sync state and last error.

    The state says ``retrying`` for an account that failed and is tried again after a
    growing pause (``--json``: ``failures``, ``next_try_at``), and ``parked`` for one whose
    credentials were refused: it is not tried until they change (`assistant doctor`
    says what to do)."""
    from assistant.services.pairs import list_accounts, public_settings
    from connectors.netguard import redact_text

    with service() as svc:
        accounts = list_accounts(svc, pair)
        zones = pair_zones(svc)
    rows = [
        {
            "id": a.id,
            "pair_id": a.pair_id,
            "name": a.name,
            "provider": a.provider,
            "kind": a.kind,
            "state": a.health,
            "disabled": a.disabled,
            "failures": a.failures,
            "next_try_at": a.next_try_at.isoformat() if a.next_try_at else None,
            "parked": a.parked or None,
            "last_sync_at": a.last_sync_at.isoformat() if a.last_sync_at else None,
            "last_error": redact_text(a.last_error),
            "settings": public_settings(a.settings),
        }
        for a in accounts
    ]
    if as_json:
        emit(rows)
    else:
        cols = ["id", "pair_id", "name", "provider", "state", "last_sync_at", "last_error"]
        table("Accounts", ["id", "pair", "name", "provider", "state", "last sync", "last error"],
              [[r[c] for c in cols] for r in rows],
              zones=[zones.get(a.pair_id, "UTC") for a in accounts])  # fmt: skip


@account_app.command("trust")
def account_trust(
    account_id: Annotated[int, typer.Argument(help="Account id (see `assistant account list`).")],
) -> None:
    """Make an account the operator's: it may read local files and reach private hosts.

    Accounts added with this CLI are the operator's already; use this for one added from
    the web app that must reach an internal host, or one added before accounts were marked.
    """
    from assistant.services.pairs import trust_account

    with service() as svc:
        account = trust_account(svc, account_id)
    out.print(f"account {account.id} ({account.name}) may read local files and private hosts")


AccountId = Annotated[int, typer.Argument(help="Account id (see `assistant account list`).")]


@account_app.command("edit")
def account_edit(
    account_id: AccountId,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A setting as key=value (repeatable); key= removes it."),
    ] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(help="A secret by reference: key=env:VAR | key=file:PATH | key=command:CMD"),
    ] = None,
    name: Annotated[str, typer.Option(help="A new name for the account.")] = "",
    check: Annotated[bool, typer.Option("--check", help="Try the connection after.")] = False,
) -> None:
    """Change an account's settings.

    They are checked as when adding it; an account parked for refused credentials is
    tried again at the next poll."""
    from assistant.services.account_edits import edit_account
    from connectors.settings import InvalidSettings

    given = settings_given(set_)
    removed = [k for k, v in given.items() if v == ""]
    changes = {k: v for k, v in given.items() if v != ""} | secrets_given(secret)
    if not changes and not removed and not name:
        raise UserError("nothing to change: give --set key=value, --secret or --name")
    with service() as svc:
        try:
            account = edit_account(svc, account_id, changes, removed=removed, name=name)
        except InvalidSettings as exc:
            err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(2) from None
        tried = try_account(svc, account.pair_id, account.id) if check else None
    out.print(f"account {account.id} ({account.name}) changed", highlight=False)
    if tried is not None:
        tried.show(account.id)
        if not tried.ok:
            raise typer.Exit(1)


@account_app.command("remove")
def account_remove(
    account_id: AccountId,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    force: Annotated[
        bool,
        typer.Option(help="Remove it even if delegated tasks wrote checkpoints into it."),
    ] = False,
) -> None:
    """Remove an account and what was synced from it.

    Asks first on a terminal (elsewhere: --yes). Its events as last seen go with it; the
    calendar or mailbox itself is not touched."""
    import sys

    from assistant.services.account_edits import (
        AccountInUse,
        remove_account,
        written_checkpoints,
    )
    from assistant.services.pairs import list_accounts

    with service() as svc:
        found = [a for a in list_accounts(svc) if a.id == account_id]
        if not found:
            raise UserError(f"no account {account_id}")
        account = found[0]
        written = written_checkpoints(svc, account_id)
        if written and not force:
            raise UserError(str(AccountInUse(account_id, written)) + "; add --force to remove it")
        if not yes:
            if not sys.stdin.isatty():
                raise UserError("removing an account cannot be undone: add --yes")
            if not typer.confirm(
                f"Remove account {account.id} ({account.name}, {account.provider}) and "
                "what was synced from it?"
            ):
                raise typer.Exit(1)
        removed = remove_account(svc, account_id, force=force)
    out.print(f"account {removed.id} ({removed.name}) removed", highlight=False)
    if removed.written_checkpoints:
        out.print(f"{removed.written_checkpoints} checkpoint event(s) stay in its calendar")
    if removed.push_left:
        out.print("its push subscription could not be stopped; it expires by itself")


@account_app.command("disable")
def account_disable(account_id: AccountId) -> None:
    """Stop syncing an account; `account enable` resumes.

    A disabled account is not polled, synced or pushed; what was synced from it stays."""
    from assistant.services.account_edits import set_disabled

    with service() as svc:
        account = set_disabled(svc, account_id, True)
    out.print(f"account {account.id} ({account.name}) disabled: not synced until "
              f"`assistant account enable {account.id}`", highlight=False)  # fmt: skip


@account_app.command("enable")
def account_enable(account_id: AccountId) -> None:
    """Sync a disabled account again (at the next poll)."""
    from assistant.services.account_edits import set_disabled

    with service() as svc:
        account = set_disabled(svc, account_id, False)
    out.print(f"account {account.id} ({account.name}) enabled", highlight=False)
