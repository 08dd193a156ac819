"""``assistant keys``: the app's key, which signs links and seals stored secrets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from assistant.entrypoints.cli.common import (
    JsonOpt,
    UserError,
    emit,
    open_engine,
    out,
    state,
)
from config import keyfile

keys_app = typer.Typer(
    help="The app's key: it signs links and seals stored secrets.", no_args_is_help=True
)


@keys_app.command("show")
def keys_show(as_json: JsonOpt = False) -> None:
    """Where the key comes from, its fingerprint, the retired keys and what is sealed."""
    from assistant.adapters import keys

    settings = state.settings
    with open_engine() as engine:
        held = keys.inventory(engine, datetime.now(UTC))
    current = keyfile.current_key(settings, create=False)
    info = {
        "source": keyfile.describe(settings),
        "key": keyfile.fingerprint(current) if current else None,
        "retired_keys": len(keyfile.all_keys(settings, create=False)) - (1 if current else 0),
        "sealed_secrets": len(held.sealed),
        "accounts_with_sealed_secrets": len({s.account_id for s in held.sealed}),
    }
    if as_json:
        emit(info)
    else:
        for k, v in info.items():
            shown = "missing" if v is None else v
            out.print(f"{k.replace('_', ' ')}: {shown}", highlight=False, markup=False)


@keys_app.command("rotate")
def keys_rotate(as_json: JsonOpt = False) -> None:
    """Make a new key and seal every stored secret again with it (one transaction); the old
    key is kept as a retired key, so links already sent work until they expire."""
    from assistant.adapters import keys

    with open_engine() as engine:
        report = keys.rotate(state.settings, engine, datetime.now(UTC))
    if as_json:
        emit(report.to_dict())
    else:
        out.print(f"new key {report.fingerprint}: {report.resealed} secret(s) of "
                  f"{report.accounts} account(s) sealed again; {report.retired} retired "
                  "key(s) kept for links already sent", highlight=False)  # fmt: skip


@keys_app.command("reseal")
def keys_reseal(as_json: JsonOpt = False) -> None:
    """Seal every stored secret again with the current key (after web.secret_key changed
    and its predecessor went to web.previous_secret_keys)."""
    from assistant.adapters import keys

    with open_engine() as engine:
        report = keys.reseal(state.settings, engine)
    if as_json:
        emit(report.to_dict())
    else:
        out.print(f"{report.resealed} secret(s) of {report.accounts} account(s) sealed again "
                  f"with key {report.fingerprint}", highlight=False)  # fmt: skip


@keys_app.command("reset")
def keys_reset(
    yes: Annotated[bool, typer.Option("--yes", help="Yes: the old key is lost.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The old key is lost: make a key if there is none and remove the stored secrets it
    cannot open; those accounts must be connected again. Links already sent stop working."""
    from assistant.adapters import keys

    if not yes:
        raise UserError("this removes the stored secrets the key cannot open: add --yes")
    with open_engine() as engine:
        report = keys.reset(state.settings, engine)
    if as_json:
        emit(report.to_dict())
    else:
        made = "a new key was made; " if report.created else ""
        ids = ", ".join(str(i) for i in report.accounts) or "none"
        out.print(f"{made}{report.dropped} unreadable secret(s) removed; reconnect accounts: "
                  f"{ids}", highlight=False)  # fmt: skip
