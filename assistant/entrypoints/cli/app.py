"""The ``assistant`` command line.

Errors a user can cause (bad config, unknown pair, unreachable server, bad date) end as
one clear line on stderr and a non-zero exit, never a traceback. Commands that print
data take ``--json``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from config.settings import ConfigError, Settings, load

if TYPE_CHECKING:
    from assistant.bootstrap import Service

app = typer.Typer(
    name="assistant",
    help="Keeps an executive's assistant in step: schedule changes, reply latency, "
    "delegation checkpoints.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
pair_app = typer.Typer(help="Manager–assistant pairs.", no_args_is_help=True)
account_app = typer.Typer(help="Calendar and mailbox accounts.", no_args_is_help=True)
task_app = typer.Typer(help="Delegated tasks and their Red Line / Dead Line.", no_args_is_help=True)
outbox_app = typer.Typer(help="Notifications waiting, sent or failed.", invoke_without_command=True)
priorities_app = typer.Typer(
    help="The manager's priorities: what reaches the assistant at once, what waits.",
    invoke_without_command=True,
)
app.add_typer(db_app, name="db")
app.add_typer(pair_app, name="pair")
app.add_typer(account_app, name="account")
app.add_typer(task_app, name="task")
app.add_typer(task_app, name="tasks", hidden=True)  # `assistant tasks score` reads naturally too
app.add_typer(outbox_app, name="outbox")
app.add_typer(priorities_app, name="priorities")
user_app = typer.Typer(help="People who log in to the web app.", no_args_is_help=True)
app.add_typer(user_app, name="user")
keys_app = typer.Typer(
    help="The app's key: it signs links and seals stored secrets.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")

out = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML settings file (default: $ASSISTANT_CONFIG).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
PairOpt = Annotated[
    str | None, typer.Option("--pair", "-p", help="Pair id or name.", show_default=False)
]


class UserError(Exception):
    """Something the user can fix; printed as one line."""


@dataclass
class State:
    config: Path | None = None
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load(self.config)
        return self._settings


state = State()


@app.callback()
def _main(config: ConfigOpt = None) -> None:
    state.config = config
    state._settings = None


@contextmanager
def service() -> Iterator[Service]:
    from assistant.bootstrap import build, configure_logging

    settings = state.settings
    configure_logging("WARNING" if settings.log_level == "INFO" else settings.log_level)
    svc = build(settings)
    try:
        yield svc
    finally:
        svc.engine.dispose()


def emit(data: Any) -> None:
    out.print_json(json.dumps(data, default=str, ensure_ascii=False))


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    out.print(t)


def parse_when(value: str, zone: str = "UTC") -> datetime:
    """An ISO date or date-time; naive values are in ``zone``."""
    from zoneinfo import ZoneInfo

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"not a date/time: {value!r} (use ISO form, e.g. 2026-12-01T15:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    return parsed.astimezone(UTC)


# ------------------------------------------------------------------------------- init


@app.command()
def init(
    directory: Annotated[
        Path, typer.Argument(help="Where to put assistant.toml and data/.")
    ] = Path("."),
) -> None:
    """Create a settings file and the database (SQLite by default)."""
    from assistant.adapters.store.migrate import upgrade

    directory.mkdir(parents=True, exist_ok=True)
    cfg = directory / "assistant.toml"
    if not cfg.exists():
        cfg.write_text('# See config/example.toml for every key.\ndata_dir = "data"\n')
        out.print(f"wrote {cfg}")
    settings = load(cfg)
    from assistant.adapters import keys

    keys.private_dir(settings.data_dir)  # 0700: the database and the key live here
    upgrade(settings.database_url)
    keys.tighten(settings)
    with _engine(settings) as engine:
        keys.check(settings, engine, datetime.now(UTC))  # makes the key once, on a new install
    out.print(f"database ready: {settings.database_url}")
    out.print(f"next: export ASSISTANT_CONFIG={cfg.resolve()} and run `assistant pair add`")


@contextmanager
def _engine(settings: Settings | None = None) -> Iterator[Any]:
    """An engine without the start-up check (the ``keys`` commands repair what it refuses)."""
    from assistant.adapters import keys
    from assistant.adapters.store.db import make_engine

    settings = settings or state.settings
    keys.tighten(settings)
    engine = make_engine(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------- keys


@keys_app.command("show")
def keys_show(as_json: JsonOpt = False) -> None:
    """Where the key comes from, its fingerprint, the retired keys and what is sealed."""
    from assistant.adapters import keys

    settings = state.settings
    with _engine() as engine:
        held = keys.inventory(engine, datetime.now(UTC))
    current = keys.current_key(settings, create=False)
    info = {
        "source": keys.describe(settings),
        "key": keys.fingerprint(current) if current else None,
        "retired_keys": len(keys.all_keys(settings, create=False)) - (1 if current else 0),
        "sealed_secrets": len(held.sealed),
        "accounts_with_sealed_secrets": len({s.account_id for s in held.sealed}),
    }
    if as_json:
        emit(info)
    else:
        for k, v in info.items():
            out.print(f"{k}: {'missing' if v is None else v}", highlight=False)


@keys_app.command("rotate")
def keys_rotate(as_json: JsonOpt = False) -> None:
    """Make a new key and seal every stored secret again with it (one transaction); the old
    key is kept as a retired key, so links already sent work until they expire."""
    from assistant.adapters import keys

    with _engine() as engine:
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

    with _engine() as engine:
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
    with _engine() as engine:
        report = keys.reset(state.settings, engine)
    if as_json:
        emit(report.to_dict())
    else:
        made = "a new key was made; " if report.created else ""
        ids = ", ".join(str(i) for i in report.accounts) or "none"
        out.print(f"{made}{report.dropped} unreadable secret(s) removed; reconnect accounts: "
                  f"{ids}", highlight=False)  # fmt: skip


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply the database migrations."""
    from assistant.adapters.store.migrate import current, upgrade

    url = state.settings.database_url
    upgrade(url, revision)
    out.print(f"database at revision {current(url)}")


# ------------------------------------------------------------------------------ pairs


@pair_app.command("add")
def pair_add(
    name: Annotated[str, typer.Argument(help="A short name for the pair.")],
    manager: Annotated[str, typer.Option(help="The manager's email address.")],
    assistant: Annotated[str, typer.Option(help="The assistant's email address.")],
    manager_name: Annotated[str, typer.Option(help="The manager's name.")] = "",
    assistant_name: Annotated[str, typer.Option(help="The assistant's name.")] = "",
    timezone: Annotated[str, typer.Option(help="The manager's time zone (IANA).")] = "UTC",
    assistant_timezone: Annotated[
        str, typer.Option(help="The assistant's zone, if different.")
    ] = "",
    sla: Annotated[int, typer.Option(help="Reply SLA in working minutes.")] = 30,
    locale: Annotated[str, typer.Option(help="Messages to the assistant in: en or ru.")] = "en",
    as_json: JsonOpt = False,
) -> None:
    """Add a manager–assistant pair."""
    from assistant.services.pairs import add_pair

    with service() as svc:
        pair = add_pair(
            svc.uow,
            name=name,
            manager_email=manager,
            assistant_email=assistant,
            manager_name=manager_name,
            assistant_name=assistant_name,
            timezone=timezone,
            assistant_timezone=assistant_timezone,
            sla_minutes=sla,
            locale=locale,
            now=svc.now(),
        )
    if as_json:
        emit({"id": pair.id, "name": pair.name})
    else:
        out.print(f"pair {pair.id} ({pair.name}) added")


@pair_app.command("feed-url")
def pair_feed_url(pair: PairOpt = None) -> None:
    """A calendar subscription URL for the pair's checkpoints (keep it private)."""
    from assistant.services.checkpoint_feed import feed_url

    with service() as svc:
        out.print(feed_url(svc, pair), soft_wrap=True)


@pair_app.command("list")
def pair_list(as_json: JsonOpt = False) -> None:
    """List the pairs."""
    from assistant.services.pairs import list_pairs

    with service() as svc:
        pairs = list_pairs(svc.uow)
    rows = [
        {
            "id": p.id,
            "name": p.name,
            "manager": p.manager_email,
            "assistant": p.assistant_email,
            "timezone": p.timezone,
            "sla_minutes": p.sla_minutes,
            "locale": p.locale,
        }
        for p in pairs
    ]
    if as_json:
        emit(rows)
    else:
        table("Pairs", list(rows[0]) if rows else ["id"], [list(r.values()) for r in rows])


# --------------------------------------------------------------------------- accounts


@account_app.command("add")
def account_add(
    name: Annotated[str, typer.Argument(help="A name for the account, e.g. work-calendar.")],
    provider: Annotated[
        str,
        typer.Option(help="ics, caldav, ews, graph, google (calendars); imap, gmail, ews-mail, "
                          "graph-mail, maildir, mbox (mailboxes)."),
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
        typer.Option(help="Any other setting as key=value (repeatable), e.g. mailbox=a@b.c, "
                          "service_endpoint=https://..., tenant=..., user=..., host=..."),
    ] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(help="A secret setting by reference, key=env:VAR | key=file:PATH | "
                          "key=command:CMD (repeatable), e.g. refresh_token=env:GRAPH_TOKEN"),
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
    with service() as svc:
        from assistant.services.accounts import keyring_for, seal_url_credentials

        url_password = seal_url_credentials(svc.settings, provider, conf)  # sealed, not stored
        if url_password and "password" not in conf:
            conf["password"] = keyring_for(svc.settings).seal(url_password)
        account = add_account(
            svc.uow, pair=pair, name=name, provider=provider, settings=conf, now=svc.now()
        )
    if as_json:
        emit({"id": account.id, "name": account.name, "kind": account.kind})
    else:
        out.print(f"account {account.id} ({account.name}, {account.kind} via {provider}) added")


@account_app.command("list")
def account_list(pair: PairOpt = None, as_json: JsonOpt = False) -> None:
    """List accounts with their sync state and last error."""
    from assistant.services.pairs import list_accounts, public_settings
    from connectors.netguard import redact_text

    with service() as svc:
        accounts = list_accounts(svc.uow, pair)
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
        cols = ["id", "pair_id", "name", "provider", "kind", "state", "last_sync_at", "last_error"]
        table("Accounts", cols, [[r[c] for c in cols] for r in rows])


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
        account = trust_account(svc.uow, account_id)
    out.print(f"account {account.id} ({account.name}) may read local files and private hosts")


# ------------------------------------------------------------------------------- sync


@app.command()
def sync(
    pair: PairOpt = None,
    account: Annotated[int | None, typer.Option(help="Only this account id.")] = None,
    send: Annotated[bool, typer.Option(help="Deliver the notifications now.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Sync calendars and mailboxes now, and deliver what they produced."""
    from assistant.services.runner import sync_now

    with service() as svc:
        results = sync_now(svc, pair=pair, account_id=account, send=send)
    if as_json:
        emit(results)
        return
    table(
        "Sync",
        ["account", "kind", "result"],
        [[r["account"], r["kind"], r["summary"]] for r in results],
    )
    if any(r.get("error") for r in results):
        raise typer.Exit(1)


@app.command()
def changes(
    pair: PairOpt = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The detected schedule changes and where their notification went."""
    from assistant.services.queries import recent_changes

    with service() as svc:
        rows = recent_changes(svc.uow, pair, limit)
    if as_json:
        emit(rows)
    else:
        cols = ["detected_at", "kind", "summary", "starts_at", "notified"]
        table("Schedule changes", cols, [[r[c] for c in cols] for r in rows])


@outbox_app.callback()
def outbox_list(
    ctx: typer.Context,
    state_filter: Annotated[
        str | None, typer.Option("--state", help="pending, sending, sent or dead.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List notifications (subcommands: retry, send)."""
    if ctx.invoked_subcommand is not None:
        return
    from assistant.services.queries import outbox_entries

    with service() as svc:
        rows = outbox_entries(svc.uow, state_filter, limit)
    if as_json:
        emit(rows)
    else:
        cols = ["id", "state", "channel", "recipient", "subject", "attempts", "last_error"]
        table("Outbox", cols, [[r[c] for c in cols] for r in rows])


@outbox_app.command("retry")
def outbox_retry(entry_id: Annotated[int, typer.Argument(help="Outbox entry id.")]) -> None:
    """Put a dead (or pending) entry back in the queue for delivery now."""
    from assistant.services.queries import retry_entry

    with service() as svc:
        retry_entry(svc.uow, entry_id, svc.now())
    out.print(f"entry {entry_id} queued again")


@outbox_app.command("send")
def outbox_send(as_json: JsonOpt = False) -> None:
    """Deliver every due notification now."""
    from assistant.adapters import outbox

    with service() as svc:
        report = outbox.drain(svc.uow, svc.channels, svc.now, svc.settings.outbox)
    if as_json:
        emit(report.to_dict())
    else:
        out.print(report.to_dict())


# ----------------------------------------------------------------------------- users


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="Their email address (the login).")],
    role: Annotated[str, typer.Option(help="manager, assistant or admin.")] = "assistant",
    name: Annotated[str, typer.Option(help="Their name.")] = "",
    password_env: Annotated[
        str, typer.Option(help="Read the password from this env variable (else: email link).")
    ] = "",
    pair: PairOpt = None,
    organisation: Annotated[str, typer.Option(help="Agency, for admins.")] = "",
) -> None:
    """Add a user and (with --pair) give them the pair, as its manager or assistant."""
    from assistant.services.users import add_membership, add_user

    password = None
    if password_env:
        password = os.environ.get(password_env)
        if not password:
            raise UserError(f"environment variable {password_env} is empty or not set")
    with service() as svc:
        uid = add_user(svc.uow, email=email, role=role, name=name, password=password,
                       organisation=organisation or None, now=svc.now())  # fmt: skip
        if pair is not None:
            if role not in ("manager", "assistant"):
                raise UserError("--pair is for a manager or an assistant")
            add_membership(svc.uow, user=uid, pair=pair, role=role, now=svc.now())
    out.print(f"user {uid} ({email}) added" + (f" to pair {pair}" if pair else ""))


@user_app.command("passwd")
def user_passwd(
    email: Annotated[str, typer.Argument(help="The user's email address.")],
    password_env: Annotated[
        str, typer.Option(help="Read the new password from this env variable.")
    ],
) -> None:
    """Set (reset) a user's password; every session of theirs ends."""
    from assistant.services.users import set_password

    password = os.environ.get(password_env)
    if not password:
        raise UserError(f"environment variable {password_env} is empty or not set")
    with service() as svc:
        ended = set_password(svc.uow, email, password)
    out.print(f"password of {email} changed; {ended} session(s) ended")


@user_app.command("disable")
def user_disable(email: Annotated[str, typer.Argument(help="The user's email address.")]) -> None:
    """Stop a user from logging in; their sessions end at once."""
    from assistant.services.users import set_active

    with service() as svc:
        set_active(svc.uow, email, False)
    out.print(f"{email} disabled; their sessions ended")


@user_app.command("enable")
def user_enable(email: Annotated[str, typer.Argument(help="The user's email address.")]) -> None:
    """Let a disabled user log in again."""
    from assistant.services.users import set_active

    with service() as svc:
        set_active(svc.uow, email, True)
    out.print(f"{email} enabled")


@user_app.command("list")
def user_list(as_json: JsonOpt = False) -> None:
    """List users and the pairs they belong to."""
    from assistant.services.users import list_users

    with service() as svc:
        rows = list_users(svc.uow)
    if as_json:
        emit(rows)
    else:
        cols = ["id", "email", "role", "pairs"]
        table("Users", cols, [[r.get(c) for c in cols] for r in rows])


# ---------------------------------------------------------------------------- digest


@app.command()
def digest(
    pair: PairOpt = None,
    send: Annotated[bool, typer.Option(help="Queue and send it now (once per day).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The assistant's daily digest: today and tomorrow, changes, conflicts, overdue
    replies, lines ahead. Without --send: a preview."""
    from assistant.adapters import outbox
    from assistant.services.digest import digest_command

    with service() as svc:
        result = digest_command(svc, pair, send=send)
        if send:
            outbox.drain(svc.uow, svc.channels, svc.now, svc.settings.outbox)
    if as_json:
        emit(result)
        return
    out.print(result["text"], markup=False, highlight=False)
    if result.get("already_sent"):
        out.print("(already sent for this day; nothing queued again)")


# ------------------------------------------------------------------------ priorities


@priorities_app.callback()
def priorities_list(ctx: typer.Context, pair: PairOpt = None, as_json: JsonOpt = False) -> None:
    """List the manager's priority rules, highest first (subcommands: add, remove)."""
    if ctx.invoked_subcommand is not None:
        return
    from assistant.services.priorities import list_rules

    with service() as svc:
        rows = list_rules(svc.uow, pair)
    if as_json:
        emit(rows)
    else:
        rows_ = [[r["id"], r["level"], r["text"]] for r in rows]
        table("Priorities", ["id", "level", "rule"], rows_)


@priorities_app.command("add")
def priorities_add(
    kind: Annotated[
        str, typer.Argument(help="person, domain, keyword, category, calendar or protected.")
    ],
    pattern: Annotated[
        str, typer.Argument(help="An address, a domain, a word, or e.g. 'mon-fri 07:00-09:00'.")
    ],
    level: Annotated[str, typer.Option(help="high, normal or low.")] = "high",
    note: Annotated[str, typer.Option(help="Why (shown to the assistant).")] = "",
    pair: PairOpt = None,
) -> None:
    """Add a rule (or change the level of the same rule)."""
    from assistant.services.priorities import add_rule

    with service() as svc:
        rid = add_rule(svc.uow, pair=pair, kind=kind, pattern=pattern, level=level, note=note,
                       now=svc.now())  # fmt: skip
    out.print(f"rule {rid}: {level} {kind} {pattern}")


@priorities_app.command("remove")
def priorities_remove(
    rule_id: Annotated[int, typer.Argument(help="Rule id (see `assistant priorities`).")],
    pair: PairOpt = None,
) -> None:
    """Remove a rule."""
    from assistant.services.priorities import remove_rule

    with service() as svc:
        remove_rule(svc.uow, rule_id, pair)
    out.print(f"rule {rule_id} removed")


# --------------------------------------------------------------------------- latency


@app.command()
def latency(
    pair: PairOpt = None,
    since: Annotated[str | None, typer.Option(help="Only messages sent from this date.")] = None,
    maildir: Annotated[
        Path | None, typer.Option(help="An exported Maildir: no account needed.")
    ] = None,
    mbox: Annotated[
        Path | None, typer.Option(help="An exported mbox file: no account needed.")
    ] = None,
    manager: Annotated[list[str] | None, typer.Option(help="Manager address (repeatable).")] = None,
    assistant: Annotated[
        list[str] | None, typer.Option(help="Assistant address (repeatable).")
    ] = None,
    sla: Annotated[float, typer.Option(help="SLA in minutes (with --maildir/--mbox).")] = 30,
    timezone: Annotated[
        str | None,
        typer.Option(help="With --maildir/--mbox: measure working time (Mon–Fri 09–18) here."),
    ] = None,
    holidays: Annotated[
        str, typer.Option(help="With --timezone: public holidays of this country (e.g. DE).")
    ] = "",
    chart: Annotated[
        Path | None, typer.Option(help="Write the weekly trend as an SVG chart to this file.")
    ] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Write the per-message records as CSV here.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """How fast the manager answers the assistant (and the other way round)."""
    from assistant.services import mail
    from assistant.services.pairs import check_zone

    since_at = parse_when(since) if since else None
    if maildir or mbox:
        if not manager or not assistant:
            raise UserError("with --maildir/--mbox give --manager and --assistant addresses")
        result = mail.latency_of_archive(
            maildir=maildir, mbox=mbox, managers=manager, assistants=assistant,
            sla_minutes=sla, since=since_at, now=datetime.now(UTC),
            zone=check_zone(timezone) if timezone else None, holidays=holidays,
        )  # fmt: skip
    else:
        with service() as svc:
            result = mail.latency_of_pair(svc, pair, since_at)
    if chart is not None:
        from assistant.domain.charts import trend_svg

        unit = "working min" if result["basis"] == "working" else "min"
        chart.write_text(trend_svg(result["weekly"], result["sla_minutes"], unit=unit))
    if csv_file is not None:
        _write_csv(csv_file, result["messages"])
    if as_json:
        emit(result)
        return
    s = result["summary"]
    unit = "working min" if result["basis"] == "working" else "min"
    table(
        "Reply latency (assistant → manager)",
        ["messages", "answered", "open", f"median {unit}", f"p90 {unit}", "within SLA"],
        [[s["count"], s["answered"], s["open"], _num(s["median_minutes"]), _num(s["p90_minutes"]),
          _pct(s["within_sla_share"])]],
    )  # fmt: skip


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    from assistant.domain import csvsafe

    columns = ["id", "direction", "subject", "sent_at", "replied_at", "wall_minutes",
               "working_minutes", "within_sla"]  # fmt: skip
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: csvsafe.cell(v) for k, v in r.items()} for r in rows)


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


# ------------------------------------------------------------------------------ tasks


@task_app.command("add")
def task_add(
    title: Annotated[str, typer.Argument(help="What is delegated.")],
    delegate: Annotated[
        str, typer.Option(help="The delegate's email (default: the assistant).")
    ] = "",
    deadline: Annotated[str, typer.Option(help="Deadline, ISO (manager's zone if naive).")] = "",
    start: Annotated[str, typer.Option(help="Term start (default: now).")] = "",
    result: Annotated[str, typer.Option(help="S: the specific result expected.")] = "",
    measure: Annotated[str, typer.Option(help="M: how the result is measured.")] = "",
    resources: Annotated[str, typer.Option(help="A: resources available.")] = "",
    why: Annotated[str, typer.Option(help="R: why it matters.")] = "",
    pair: PairOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delegate a task: its Red Line and Dead Line go into the manager's calendar."""
    from assistant.services import delegation

    if not deadline:
        raise UserError("a task needs --deadline")
    with service() as svc:
        zone = delegation.pair_zone(svc, pair)
        task = delegation.create_task(
            svc,
            pair=pair,
            title=title,
            delegate=delegate,
            term_start=parse_when(start, zone) if start else svc.now(),
            deadline=parse_when(deadline, zone),
            result=result,
            measure=measure,
            resources=resources,
            why=why,
        )
        report = delegation.reconcile_checkpoints(svc, task.id)
        shown = delegation.task_view(svc, task.id)
    if as_json:
        emit(shown | {"calendar": report.to_dict()})
    else:
        _print_task(shown)
        for line in report.messages:
            out.print(line)


@task_app.command("list")
def task_list(pair: PairOpt = None, as_json: JsonOpt = False) -> None:
    """List delegated tasks."""
    from assistant.services import delegation

    with service() as svc:
        rows = delegation.list_tasks(svc, pair)
    if as_json:
        emit(rows)
    else:
        cols = ["id", "title", "delegate", "state", "red_line", "dead_line"]
        table("Tasks", cols, [[r[c] for c in cols] for r in rows])


@task_app.command("show")
def task_show(task_id: Annotated[int, typer.Argument()], as_json: JsonOpt = False) -> None:
    """One task with its checkpoints."""
    from assistant.services import delegation

    with service() as svc:
        shown = delegation.task_view(svc, task_id)
    if as_json:
        emit(shown)
    else:
        _print_task(shown)


@task_app.command("update")
def task_update(
    task_id: Annotated[int, typer.Argument()],
    deadline: Annotated[str, typer.Option(help="New deadline.")] = "",
    title: Annotated[str, typer.Option(help="New title.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Change a task's deadline or title; its calendar events follow."""
    from assistant.services import delegation

    with service() as svc:
        zone = delegation.task_zone(svc, task_id)
        delegation.update_task(
            svc,
            task_id,
            deadline=parse_when(deadline, zone) if deadline else None,
            title=title or None,
        )
        report = delegation.reconcile_checkpoints(svc, task_id)
        shown = delegation.task_view(svc, task_id)
    if as_json:
        emit(shown | {"calendar": report.to_dict()})
    else:
        _print_task(shown)


@task_app.command("cancel")
def task_cancel(task_id: Annotated[int, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Cancel a task; its checkpoint events are removed from the calendar."""
    from assistant.services import delegation

    with service() as svc:
        delegation.cancel_task(svc, task_id)
        report = delegation.reconcile_checkpoints(svc, task_id)
    if as_json:
        emit({"id": task_id, "state": "cancelled", "calendar": report.to_dict()})
    else:
        out.print(f"task {task_id} cancelled; {report.summary()}")


@task_app.command("accept")
def task_accept(
    task_id: Annotated[int, typer.Argument()],
    percent: Annotated[int, typer.Option(min=0, max=100, help="How much was done, 0–100.")],
    on_time: Annotated[bool, typer.Option("--on-time/--late", help="Done by the deadline?")],
    comment: Annotated[str, typer.Option(help="What to praise, what to improve.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Accept a task at (or before) its Dead Line; lines still ahead leave the calendar."""
    from assistant.domain.feedback import Confidence, FeedbackAnswer
    from assistant.services import delegation, feedback

    with service() as svc:
        view = delegation.task_view(svc, task_id)
        answer = FeedbackAnswer(percent, on_time, False, None, None, comment, Confidence.HIGH)
        feedback.record_answer(svc, task_id=task_id, kind="dead_line", source="cli",
                               respondent=view["delegator"], answer=answer,
                               correction=True)  # fmt: skip
        delegation.accept_task(svc, task_id)
        report = delegation.reconcile_checkpoints(svc, task_id)
    good = percent >= 80 and on_time
    if as_json:
        emit({"id": task_id, "state": "accepted", "good_delegation": good,
              "calendar": report.to_dict()})  # fmt: skip
    else:
        verdict = "good delegation" if good else "below the bar (80% and on time)"
        out.print(f"task {task_id} accepted: {percent}%, {'on time' if on_time else 'late'} — "
                  f"{verdict}; {report.summary()}. Now thank the delegate.")  # fmt: skip


@task_app.command("feedback")
def task_feedback(
    task_id: Annotated[int, typer.Argument()],
    text: Annotated[str | None, typer.Argument(help="An answer in words: '80%, on track'.")] = None,
    line: Annotated[str, typer.Option(help="red_line or dead_line.")] = "red_line",
    as_json: JsonOpt = False,
) -> None:
    """Record an answer at a line (parsed from words), or list the answers so far."""
    from assistant.domain.delegation import CheckpointKind
    from assistant.domain.feedback import parse_answer
    from assistant.services import delegation, feedback

    with service() as svc:
        if text is not None:
            if line not in ("red_line", "dead_line"):
                raise UserError("--line is red_line or dead_line")
            view = delegation.task_view(svc, task_id)
            answer = parse_answer(text, kind=CheckpointKind(line))
            if answer.confidence.value == "low":
                doubts = "; ".join(answer.doubts) or "say how much is done and whether on track"
                raise UserError(f"not sure what that means ({doubts})")
            feedback.record_answer(svc, task_id=task_id, kind=line, source="cli",
                                   respondent=view["delegator"], answer=answer,
                                   correction=True)  # fmt: skip
        rows = feedback.feedback_of(svc, task_id)
    if as_json:
        emit(rows)
    else:
        cols = ["answered_at", "kind", "respondent", "percent_done", "on_time", "on_track",
                "needs_help", "comment"]  # fmt: skip
        table(f"Feedback on task {task_id}", cols, [[r[c] for c in cols] for r in rows])


@task_app.command("step")
def task_step(
    task_id: Annotated[int, typer.Argument()],
    step: Annotated[str, typer.Argument(help="understood (the delegate retold it), "
                                             "in_progress, or praised (after acceptance).")],
) -> None:
    """Record a step of the delegation method."""
    from assistant.services import delegation

    with service() as svc:
        delegation.advance_task(svc, task_id, step)
    out.print(f"task {task_id}: {step}")


@task_app.command("restore")
def task_restore(task_id: Annotated[int, typer.Argument()]) -> None:
    """Put back checkpoint events the manager removed from the calendar."""
    from assistant.services import delegation

    with service() as svc:
        n = delegation.restore_checkpoints(svc, task_id)
        report = delegation.reconcile_checkpoints(svc, task_id)
    out.print(f"{n} checkpoint(s) restored; {report.summary()}")


@task_app.command("score")
def task_score(pair: PairOpt = None, as_json: JsonOpt = False) -> None:
    """The delegation score: accepted tasks done on time with 80% or more."""
    from assistant.services.feedback import score

    with service() as svc:
        s = score(svc, pair)
    if as_json:
        emit(s)
        return
    share = "—" if s["share"] is None else f"{s['share']:.0%}"
    verdict = {True: " (good delegation)", False: " (below 80%)", None: ""}[s["good_delegation"]]
    out.print(f"{s['manager']}: {s['good']} of {s['accepted']} accepted tasks good: {share}"
              f"{verdict}; {s['open']} open")  # fmt: skip
    table("Per delegate", ["delegate", "accepted", "good", "share", "mean %"],
          [[d["delegate"], d["accepted"], d["good"], f"{d['share']:.0%}",
            f"{d['mean_percent']:.0f}"] for d in s["delegates"]])  # fmt: skip


def _print_task(t: dict[str, Any]) -> None:
    out.print(f"[bold]Task {t['id']}[/bold]: {t['title']}  ({t['state']})")
    out.print(f"  delegate: {t['delegate']}   term: {t['term_start']} → {t['deadline']}")
    for c in t["checkpoints"]:
        placed = f"{c['start']} – {c['end']}" if c["start"] else "not placed"
        out.print(f"  {c['label']}: line {c['line_at']}; in calendar: {placed} [{c['state']}]")


# ------------------------------------------------------------------------- run, demo


@app.command()
def run(
    host: Annotated[str | None, typer.Option(help="Web host (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Web port (default from settings).")] = None,
) -> None:
    """Run the service: scheduler, a Huey consumer and the web app, in one process."""
    from assistant.entrypoints.runner import run_service

    run_service(state.settings, host=host, port=port)


@app.command()
def demo(
    serve: Annotated[
        bool, typer.Option(help="Keep the web app up afterwards (Ctrl-C stops).")
    ] = False,
    keep: Annotated[Path | None, typer.Option(help="Keep the demo's files in this folder.")] = None,
) -> None:
    """Play a short scenario on embedded servers; needs nothing installed or running."""
    from assistant.entrypoints.demo import run_demo

    raise typer.Exit(run_demo(out, serve=serve, keep=keep))


# ------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    import click

    from connectors.base import ConnectorError

    try:
        rc = app(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 1
    except ConfigError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        return 2
    except (UserError, LookupError, ValueError, ConnectorError) as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a fault of ours: say so plainly
        err.print(f"internal error: {type(exc).__name__}: {exc}", markup=False, highlight=False)
        if os.environ.get("ASSISTANT_DEBUG"):
            raise
        err.print("set ASSISTANT_DEBUG=1 to see the traceback", markup=False)
        return 70
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
