"""``assistant account``: calendar and mailbox accounts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
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
    for item in setting or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--setting {item!r}: write key=value")
        conf[key.strip()] = value
    for item in secret or []:
        key, sep, ref = item.partition("=")
        kind, sep2, target = ref.partition(":")
        if not sep or not sep2 or kind not in ("env", "file", "command") or not target:
            raise UserError(
                f"--secret {item!r}: write key=env:VAR, key=file:PATH or key=command:CMD"
            )
        conf[key.strip()] = {kind: target}
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
    if as_json:
        emit({"id": account.id, "name": account.name, "kind": account.kind})
    else:
        out.print(f"account {account.id} ({account.name}, {account.kind} via {provider}) added")


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
    """List accounts with their sync state and last error."""
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
            "state": a.state,
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
