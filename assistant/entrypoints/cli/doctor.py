"""``assistant doctor``: one line per check, ✓ or ✗ with the fix; exit 1 if any ✗.

The checks, in the order a problem in one makes the next meaningless: the settings, the
database and its migrations, the app's key, the SMTP server (reachable, and accepting our
sender), every account (reachable and authorised: the same check as the web's Check
button), the push subscriptions of the accounts that have them, and the queue.
Nothing is changed, except that a failing account records the failure on itself, as a
sync would.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

from assistant.entrypoints.cli.common import JsonOpt, NoSettings, out, settings_source, state

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from assistant.store.db import UnitOfWork
    from config.settings import Settings


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _settings() -> tuple[Settings | None, Check]:
    from config.settings import ConfigError, load

    try:
        source = settings_source(state.config)
        settings = load(source)
    except ConfigError as exc:
        return None, Check("settings", False, str(exc).replace("\n", " "), "correct the file")
    except NoSettings as exc:
        return None, Check("settings", False, str(exc), "run `assistant init`")
    return settings, Check("settings", True, f"read from {source or 'the environment'}")


def _database(settings: Settings) -> tuple[Engine | None, Check]:
    from sqlalchemy.exc import SQLAlchemyError

    from assistant.store.db import make_engine
    from assistant.store.migrate import current, head

    engine = make_engine(settings.database_url)
    where = engine.url.render_as_string(hide_password=True)
    try:
        at, latest = current(engine), head()
    except SQLAlchemyError as exc:
        engine.dispose()
        orig = getattr(exc, "orig", None)
        reason = type(orig if orig is not None else exc).__name__
        return None, Check("database", False, f"cannot open {where} ({reason})",
                           "check database_url; is the server running?")  # fmt: skip
    if at != latest:
        return engine, Check("database", False, f"{where} is at migration {at or 'none'}, "
                             f"the code needs {latest}", "run `assistant db upgrade`")  # fmt: skip
    return engine, Check("database", True, f"{where}, migrations up to date")


def _key(settings: Settings, engine: Engine) -> Check:
    from assistant.adapters.keys import check
    from config.keyfile import KeyProblem, current_key, describe, fingerprint

    key = current_key(settings, create=False)  # doctor never makes a key
    if key is None:
        return Check("key", False, f"no key at {describe(settings)}", "run `assistant init`")
    try:
        check(settings, engine, datetime.now(UTC))
    except KeyProblem as exc:
        return Check("key", False, str(exc))
    return Check("key", True, f"{describe(settings)} (fingerprint {fingerprint(key)})")


def _smtp(settings: Settings) -> Check:
    import smtplib
    import ssl

    smtp = settings.smtp
    where = f"{smtp.host}:{smtp.port}"
    try:
        if smtp.ssl:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=min(smtp.timeout_seconds, 10.0),
                context=ssl.create_default_context(),
            )  # fmt: skip
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=min(smtp.timeout_seconds, 10.0))
        with client:
            client.ehlo()
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if smtp.username and smtp.password is not None:
                client.login(smtp.username, smtp.password.resolve().get_secret_value())
            code, _ = client.mail(smtp.from_address)
            client.rset()
    except smtplib.SMTPAuthenticationError:
        return Check("smtp", False, f"{where} refused the user name or password",
                     "check smtp.username and smtp.password")  # fmt: skip
    except (OSError, smtplib.SMTPException) as exc:
        return Check("smtp", False, f"cannot reach SMTP server {where} ({type(exc).__name__})",
                     "check smtp.host, smtp.port and smtp.ssl/starttls")  # fmt: skip
    if code >= 400:
        return Check("smtp", False, f"{where} refused the sender {smtp.from_address} ({code})",
                     "set smtp.from_address to an address the server accepts")  # fmt: skip
    return Check("smtp", True, f"{where} accepts {smtp.from_address}")


def _accounts(settings: Settings) -> list[Check]:
    from assistant.bootstrap import build
    from assistant.domain.account_health import Failure, describe
    from assistant.entrypoints.web.i18n import translator
    from assistant.services.account_health import account_health
    from assistant.services.accounts import check_account
    from assistant.services.pairs import list_accounts

    t = translator("en")
    svc = build(settings)
    try:
        checks = []
        health = {h.account_id: h for h in account_health(svc)}
        for account in list_accounts(svc):
            name = f"account {account.id} {account.name} ({account.provider})"
            h = health.get(account.id)
            if account.disabled:  # turned off by a person: not tried, not a fault
                enable = f"`assistant account enable {account.id}`"
                checks.append(Check(name, True, f"disabled: not synced or checked ({enable})"))
                continue
            if h is not None and h.parked:  # not tried again: a provider may lock it
                what, fix = describe(h.failure or Failure.OTHER, "en")
                checks.append(Check(name, False, f"{what}: {h.failures} tries since "
                                    f"{_utc(h.failing_since)}, no longer tried until the "
                                    "credentials change", fix))  # fmt: skip
                continue
            result = check_account(svc, account.pair_id, account.id)
            fix = "" if result.ok else "`assistant account list` shows its status"
            detail = t(result.note)
            if h is not None and h.failing:
                what, _ = describe(h.failure or Failure.OTHER, "en")
                detail += (f" (syncs failing since {_utc(h.failing_since)}: {what}; "
                           f"{h.failures} tries, next {_utc(h.next_try_at)})")  # fmt: skip
            checks.append(Check(name, result.ok, detail, fix))
        checks.extend(_push(svc.uow, datetime.now(UTC)))
        return checks
    finally:
        svc.engine.dispose()


def _utc(t: datetime | None) -> str:
    return f"{t:%Y-%m-%d %H:%M} UTC" if t is not None else "—"


def _push(uow: UnitOfWork, now: datetime) -> list[Check]:
    from sqlalchemy import select

    from assistant.services.push import PUSH_PROVIDERS
    from assistant.services.push_state import push_of, stored_time
    from assistant.store.tables import Account

    checks = []
    with uow.read() as session:
        for account in session.scalars(
            select(Account).where(Account.provider.in_(PUSH_PROVIDERS)).order_by(Account.id)
        ):
            push = push_of(account.sync_state)
            expires = stored_time(push.get("expires"))  # None too when unreadable
            name = f"push {account.id} {account.name}"
            until = f"{expires:%Y-%m-%d %H:%M} UTC" if expires else ""
            if not push.get("id") or expires is None:
                checks.append(Check(name, False, "no subscription: changes arrive by polling",
                                    "run `assistant run` with web.public_url set"))  # fmt: skip
            elif expires <= now:
                checks.append(Check(name, False, f"subscription expired at {until}",
                                    "run `assistant run`: it renews subscriptions"))  # fmt: skip
            else:
                checks.append(Check(name, True, f"subscribed until {until}"))
    return checks


def _queue(settings: Settings) -> Check:
    from jobs.queue import build_huey

    try:
        huey = build_huey(settings)
        pending = huey.pending_count()
    except Exception as exc:  # the storage (SQLite file, Redis) cannot be reached
        return Check("queue", False, f"{settings.queue.backend} queue unreachable "
                     f"({type(exc).__name__})", "check queue.backend and queue.url")  # fmt: skip
    return Check("queue", True, f"{settings.queue.backend}, {pending} job(s) waiting")


def run_checks() -> list[Check]:
    settings, first = _settings()
    checks = [first]
    if settings is None:
        return checks
    engine, db = _database(settings)
    checks.append(db)
    key_ok = False
    if engine is not None:
        try:
            key = _key(settings, engine)
        finally:
            engine.dispose()
        checks.append(key)
        key_ok = key.ok
    checks.append(_smtp(settings))
    if db.ok and key_ok:  # an account's check needs the store and its sealed secrets
        checks.extend(_accounts(settings))
    checks.append(_queue(settings))
    return checks


def doctor(as_json: JsonOpt = False) -> None:
    """Check the settings, database, key, SMTP, accounts, push and queue; exit 1 on a ✗."""
    checks = run_checks()
    if as_json:
        out.print_json(json.dumps([asdict(c) for c in checks], ensure_ascii=False))
    else:
        for c in checks:
            mark = "✓" if c.ok else "✗"
            line = f"{mark} {c.name}: {c.detail}"
            if c.fix:
                line += f" — fix: {c.fix}"
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
