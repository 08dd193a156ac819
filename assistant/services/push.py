"""Webhook push in the running service: Graph subscriptions and Google watch channels.

When ``web.public_url`` is set, each Graph and Google calendar account keeps one live
subscription (Graph) or watch channel (Google) that points at ``/push/graph`` or
``/push/google`` under that URL. Its id, secret (Graph's clientState, Google's channel
token), expiry and address (and Google's resourceId, needed to stop it) are kept in
``Account.sync_state["push"]``, beside the sync service's keys, always read and written
in one locked transaction so that neither side loses the other's keys
(``assistant.services.push_state``).

* :func:`ensure_push` creates one, renews it when less than a day is left (Graph: PATCH;
  Google: a new channel, stored, then the old one stopped) or replaces it when the
  address changed. A stored entry is only ever replaced by a writer that saw it: a
  concurrent ensure that lost the race removes what it made, so an account never has
  two live channels in the store (and, unless a stop fails, none at the provider). A
  Google channel is registered as ``pending`` before ``events.watch`` so that Google's
  first (``sync``) message finds its token.
* :func:`drop_push` deletes the subscription or stops the channel and forgets it: when
  ``web.public_url`` is unset, or before an account is removed.
* :func:`handle_signal` turns what the receiver reported into work: a change (or
  ``missed``) is a sync of the account; ``reauthorizationRequired`` a renewal;
  ``subscriptionRemoved`` a new subscription, then a sync.
* :class:`DbDirectory` is the receiver's :class:`~assistant.entrypoints.web.push.PushDirectory`: an
  id to (account id, secret), read from the store.

Failures are recorded on the entry (``error``, ``failures``, ``retry_at``, with back-off)
so that the once-a-minute upkeep (:func:`accounts_due`) does not hammer a provider that
refuses. Polling stays on in any case: push only makes changes arrive sooner.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import or_, select

from assistant.services.accounts import token_keeper
from assistant.services.push_state import (
    clear_pending,
    load_entry,
    locked_account,
    push_of,
    record_failure,
    set_pending,
    store_entry,
    stored_time,
)
from assistant.store.tables import Account
from connectors.base import ConnectorError, NotFound

if TYPE_CHECKING:
    from assistant.services.deps import Deps
    from assistant.store.db import UnitOfWork
    from config.settings import Settings
    from connectors.google.calendar import GoogleCalendar
    from connectors.google.push import GoogleChannel, GoogleWatches
    from connectors.graph.calendar import GraphCalendar
    from connectors.graph.push import GraphSubscription, GraphSubscriptions

log = logging.getLogger(__name__)

SignalKind = Literal["change", "reauthorizationRequired", "subscriptionRemoved", "missed"]


@dataclass(frozen=True, slots=True)
class PushSignal:
    """An account's calendar changed (or its subscription needs care)."""

    provider: Literal["graph", "google"]
    account_id: int
    kind: SignalKind
    subscription_id: str  # the Graph subscription or the Google channel


PUSH_PROVIDERS = ("graph", "google")
PATHS = {"graph": "/push/graph", "google": "/push/google"}
RENEW_BEFORE = timedelta(days=1)  # as connectors.graph.push / google_push renew
SYNC_KINDS = frozenset({"change", "exists", "not_exists", "sync", "missed"})

Action = Literal[
    "kept", "created", "renewed", "replaced", "superseded", "dropped", "none", "skipped"
]


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """What :func:`ensure_push` or :func:`drop_push` did (no secrets in it)."""

    account_id: int
    action: Action
    subscription_id: str = ""
    expires: datetime | None = None
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "account_id": self.account_id,
            "action": self.action,
            "subscription_id": self.subscription_id,
            "expires": self.expires.isoformat() if self.expires else None,
            **({"note": self.note} if self.note else {}),
        }


# ----------------------------------------------------------------------- settings


def push_base(settings: Settings) -> str | None:
    """The public URL webhooks go to, or None when push by webhook is off.

    An https URL; or a loopback http one (127.0.0.1, localhost), which no real provider
    reaches but the local protocol servers of the tests do.
    """
    url = settings.web.public_url.strip().rstrip("/")
    if url.startswith("https://"):
        return url
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return url
    return None


def push_address(settings: Settings, provider: str) -> str | None:
    base = push_base(settings)
    return None if base is None or provider not in PATHS else base + PATHS[provider]


def calendar_pushes(settings: Settings, provider: str) -> bool:
    """Whether a calendar account of ``provider`` can report a change between two polls:
    Exchange by streaming (``assistant run`` keeps it open), Graph and Google by webhook
    when a public URL is set; CalDAV and ICS feeds only when polled."""
    if provider == "ews":
        return True
    return provider in PATHS and push_address(settings, provider) is not None


# ---------------------------------------------------------------------- the directory


class DbDirectory:
    """The receiver's directory, read from ``Account.sync_state["push"]``."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def graph_subscription(self, subscription_id: str) -> tuple[int, str] | None:
        return self._find("graph", subscription_id)

    def google_channel(self, channel_id: str) -> tuple[int, str] | None:
        return self._find("google", channel_id)

    def _find(self, provider: str, ident: str) -> tuple[int, str] | None:
        if not ident:
            return None
        live = Account.sync_state[("push", "id")].as_string()
        pending = Account.sync_state[("push", "pending", "id")].as_string()
        with self.uow.read() as session:
            rows = session.execute(
                select(Account.id, Account.sync_state).where(
                    Account.provider == provider, or_(live == ident, pending == ident)
                )
            ).all()
        for account_id, state in rows:
            push = push_of(state)
            for entry in (push, push.get("pending")):
                if isinstance(entry, Mapping) and entry.get("id") == ident and entry.get("secret"):
                    return account_id, str(entry["secret"])
        return None


# ------------------------------------------------------------------------ use cases


def ensure_push(
    deps: Deps,
    account_id: int,
    now: datetime,
    *,
    renew: bool = False,
    recreate: bool = False,
) -> PushOutcome:
    """A live subscription or channel for the account, stored; created or renewed as due.

    ``renew`` renews even when not due (Graph's ``reauthorizationRequired``);
    ``recreate`` makes a new one without touching the stored one (Graph removed it).
    Without a usable ``web.public_url`` this is :func:`drop_push`. Raises ConnectorError
    (or a settings error), recorded on the entry with the time of the next attempt.
    """
    loaded = load_entry(deps.uow, account_id)
    if loaded is None:
        return PushOutcome(account_id, "skipped", note="no such account")
    provider, conf, stored = loaded
    if provider not in PUSH_PROVIDERS:
        return PushOutcome(account_id, "skipped", note=f"{provider} has no webhook push")
    address = push_address(deps.settings, provider)
    if address is None:
        return drop_push(deps, account_id)
    timeout = deps.settings.sync.http_timeout_seconds
    try:
        if provider == "graph":
            with _graph(conf, timeout, token_keeper(deps, account_id)) as calendar:
                return _ensure_graph(deps.uow, account_id, calendar, address, stored, now,
                                     renew=renew, recreate=recreate)  # fmt: skip
        calendar_g = _google(conf, timeout)
        return _ensure_google(deps.uow, account_id, calendar_g, address, stored, now,
                              renew=renew, recreate=recreate)  # fmt: skip
    except Exception as exc:  # a provider's refusal, or settings that do not open
        record_failure(deps.uow, account_id, exc, now)
        raise


def drop_push(deps: Deps, account_id: int) -> PushOutcome:
    """Delete the subscription (stop the channel) at the provider, then forget it.

    Called when ``web.public_url`` is unset, and before an account is removed. A
    subscription the provider no longer has counts as deleted.
    """
    loaded = load_entry(deps.uow, account_id)
    if loaded is None:
        return PushOutcome(account_id, "skipped", note="no such account")
    provider, conf, stored = loaded
    if not stored:
        return PushOutcome(account_id, "none")
    ident = str(stored.get("id") or "")
    stale = list(stored.get("stale") or [])
    timeout = deps.settings.sync.http_timeout_seconds
    try:
        if provider == "graph" and ident:
            with _graph(conf, timeout, token_keeper(deps, account_id)) as calendar:
                _graph_subs(calendar, str(stored.get("address") or "")).delete(_graph_sub(stored))
        elif provider == "google" and (ident or stale):
            watches = _watches(_google(conf, timeout), str(stored.get("address") or ""))
            for entry in ([stored] if ident else []) + stale:
                watches.stop(_google_channel(entry))
    except Exception as exc:
        record_failure(deps.uow, account_id, exc, deps.now())
        raise
    with locked_account(deps.uow, account_id) as account:
        if account is not None and str(push_of(account.sync_state).get("id") or "") == ident:
            account.sync_state = {k: v for k, v in account.sync_state.items() if k != "push"}
    return PushOutcome(account_id, "dropped" if ident else "none", ident)


def handle_signal(
    deps: Deps,
    signal: PushSignal,
    queue_sync: Callable[[int], object],
    now: datetime | None = None,
) -> str:
    """Act on one signal from the receiver; what was done.

    change / exists / not_exists / sync / missed → a sync of the account is queued;
    reauthorizationRequired → the subscription is renewed (a PATCH reauthorizes);
    subscriptionRemoved → a new subscription, then a sync (changes made meanwhile).
    A lifecycle event for a subscription we no longer hold only queues a sync.
    """
    now = now or deps.now()
    account_id = signal.account_id
    if signal.kind in SYNC_KINDS:
        queue_sync(account_id)
        return "sync"
    loaded = load_entry(deps.uow, account_id)
    if loaded is None:
        return "no such account"
    if str(loaded[2].get("id") or "") != signal.subscription_id:
        queue_sync(account_id)
        return "sync (not the stored subscription)"
    if signal.kind == "reauthorizationRequired":
        outcome = ensure_push(deps, account_id, now, renew=True)
        return outcome.action
    if signal.kind == "subscriptionRemoved":
        try:
            outcome = ensure_push(deps, account_id, now, recreate=True)
        finally:
            queue_sync(account_id)
        return outcome.action
    log.warning("push for account %s: unknown signal %r", account_id, signal.kind)
    queue_sync(account_id)
    return "sync"


def accounts_due(deps: Deps, now: datetime) -> tuple[list[int], list[int]]:
    """(accounts to ensure, accounts to drop) for the once-a-minute upkeep.

    To ensure, when webhooks are on: Graph and Google calendars without a subscription
    or with one that expires within ``RENEW_BEFORE`` (or stored for another address).
    To drop, when they are off: those that still have one. An account whose last
    attempt failed waits until its ``retry_at``; a parked account (``account_health``)
    waits for new credentials.
    """
    base = push_base(deps.settings)
    with deps.uow.read() as session:
        rows = session.execute(
            select(Account.id, Account.provider, Account.sync_state, Account.disabled)
            .where(Account.kind == "calendar", Account.provider.in_(PUSH_PROVIDERS))
            .where(Account.parked_reason == "")  # its credentials are refused: not tried
            .order_by(Account.id)
        ).all()
    ensure: list[int] = []
    drop: list[int] = []
    for account_id, provider, state, disabled in rows:
        push = push_of(state)
        retry_at = stored_time(push.get("retry_at"))
        if retry_at is not None and retry_at > now:
            continue
        if base is None or disabled:  # a disabled account keeps no subscription
            if push.get("id") or push.get("stale"):
                drop.append(account_id)
            continue
        expires = stored_time(push.get("expires"))
        if (
            not push.get("id")
            or expires is None
            or expires - now <= RENEW_BEFORE
            or push.get("address") != base + PATHS[provider]
            or push.get("stale")
        ):
            ensure.append(account_id)
    return ensure, drop


# ------------------------------------------------------------------------ Graph


def _ensure_graph(
    uow: UnitOfWork,
    account_id: int,
    calendar: GraphCalendar,
    address: str,
    stored: Mapping[str, Any],
    now: datetime,
    *,
    renew: bool,
    recreate: bool,
) -> PushOutcome:
    subs = _graph_subs(calendar, address)
    base_id = str(stored.get("id") or "")
    current = _graph_sub(stored) if base_id and not recreate else None
    old: GraphSubscription | None = None  # one to delete once the new one is stored
    action: Action
    if current is None or current.expires <= now:  # Graph deletes expired ones itself
        fresh, action = subs.create(now), "created"
    elif stored.get("address") != address:
        fresh, action, old = subs.create(now), "replaced", current
    elif renew or subs.needs_renewal(current, now):
        try:
            fresh, action = subs.renew(current, now), "renewed"
        except NotFound:  # Graph no longer has it
            fresh, action = subs.create(now), "created"
    else:
        return PushOutcome(account_id, "kept", current.id, current.expires)
    entry = {
        "provider": "graph",
        "id": fresh.id,
        "secret": fresh.client_state,
        "expires": fresh.expires.isoformat(),
        "address": address,
        "resource": fresh.resource,
    }
    if not store_entry(uow, account_id, base_id, entry):
        if fresh.id != base_id:  # another ensure stored its own meanwhile: ours goes
            _quietly(lambda: subs.delete(fresh), account_id, "delete a spare subscription")
        return PushOutcome(account_id, "superseded", note="another subscription was stored")
    if old is not None:
        _quietly(lambda: subs.delete(old), account_id, "delete the replaced subscription")
    log.info("push for account %s: Graph subscription %s (%s)", account_id, fresh.id, action)
    return PushOutcome(account_id, action, fresh.id, fresh.expires)


def _graph_subs(calendar: GraphCalendar, address: str) -> GraphSubscriptions:
    from connectors.graph.push import GraphSubscriptions

    return GraphSubscriptions(calendar, address, address, renew_before=RENEW_BEFORE)


def _graph_sub(stored: Mapping[str, Any]) -> GraphSubscription:
    from connectors.graph.push import GraphSubscription

    return GraphSubscription(
        id=str(stored["id"]),
        resource=str(stored.get("resource") or ""),
        client_state=str(stored.get("secret") or ""),
        expires=stored_time(stored.get("expires")) or datetime.min.replace(tzinfo=UTC),
    )


@contextmanager
def _graph(
    conf: Mapping[str, Any], timeout: float, keep_token: Callable[[str], None]
) -> Iterator[GraphCalendar]:
    from connectors.graph.calendar import GraphCalendar
    from connectors.registry import open_calendar

    calendar = open_calendar("graph", conf, timeout=timeout, keep_token=keep_token)
    assert isinstance(calendar, GraphCalendar)
    try:
        yield calendar
    finally:
        calendar.close()


# ------------------------------------------------------------------------ Google


def _ensure_google(
    uow: UnitOfWork,
    account_id: int,
    calendar: GoogleCalendar,
    address: str,
    stored: Mapping[str, Any],
    now: datetime,
    *,
    renew: bool,
    recreate: bool,
) -> PushOutcome:
    watches = _watches(calendar, address)
    base_id = str(stored.get("id") or "")
    stale = [_google_channel(e) for e in stored.get("stale") or []]
    current = _google_channel(stored) if base_id and not recreate else None
    live = current is not None and current.expires > now
    if current is not None and live and not renew and current.address == address \
            and not watches.needs_renewal(current, now):  # fmt: skip
        _stop_stale(uow, account_id, watches, stale)
        return PushOutcome(account_id, "kept", current.id, current.expires)
    channel_id, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    if not set_pending(uow, account_id, base_id, channel_id, token):
        return PushOutcome(account_id, "superseded", note="the stored channel changed")
    try:
        fresh = watches.start(now, channel_id=channel_id, token=token)
    except BaseException:
        clear_pending(uow, account_id, channel_id)
        raise
    entry = {
        "provider": "google",
        "id": fresh.id,
        "secret": fresh.token,
        "expires": fresh.expires.isoformat(),
        "address": fresh.address or address,
        "resource_id": fresh.resource_id,
    }
    if not store_entry(uow, account_id, base_id, entry, pending_id=channel_id):
        _quietly(lambda: watches.stop(fresh), account_id, "stop a spare channel")
        return PushOutcome(account_id, "superseded", note="another channel was stored")
    if current is not None and live:  # the old one goes only once the new one is stored
        stale.append(current)
    _stop_stale(uow, account_id, watches, stale)
    action: Action = "created" if current is None or not live else "renewed"
    log.info("push for account %s: Google channel %s (%s)", account_id, fresh.id, action)
    return PushOutcome(account_id, action, fresh.id, fresh.expires)


def _stop_stale(
    uow: UnitOfWork, account_id: int, watches: GoogleWatches, channels: list[GoogleChannel]
) -> None:
    """Stop old channels; those that could not be stopped are kept to try again."""
    if not channels:
        return
    left = []
    for channel in channels:
        try:
            watches.stop(channel)  # False: Google no longer had it
        except ConnectorError as exc:
            log.warning("push for account %s: could not stop channel %s: %s",
                        account_id, channel.id, exc)  # fmt: skip
            left.append({"id": channel.id, "resource_id": channel.resource_id,
                         "expires": channel.expires.isoformat()})  # fmt: skip
    with locked_account(uow, account_id) as account:
        if account is not None:
            push = dict(push_of(account.sync_state))
            if left:
                push["stale"] = left
            else:
                push.pop("stale", None)
            account.sync_state = {**account.sync_state, "push": push}


def _watches(calendar: GoogleCalendar, address: str) -> GoogleWatches:
    from connectors.google.push import GoogleWatches

    return GoogleWatches(calendar, address, renew_before=RENEW_BEFORE)


def _google_channel(stored: Mapping[str, Any]) -> GoogleChannel:
    from connectors.google.push import GoogleChannel

    return GoogleChannel(
        id=str(stored["id"]),
        resource_id=str(stored.get("resource_id") or ""),
        token=str(stored.get("secret") or ""),
        expires=stored_time(stored.get("expires")) or datetime.min.replace(tzinfo=UTC),
        address=str(stored.get("address") or ""),
    )


def _google(conf: Mapping[str, Any], timeout: float) -> GoogleCalendar:
    from connectors.google.calendar import GoogleCalendar
    from connectors.registry import open_calendar

    calendar = open_calendar("google", conf, timeout=timeout)
    assert isinstance(calendar, GoogleCalendar)
    return calendar


def _quietly(call: Callable[[], object], account_id: int, what: str) -> None:
    try:
        call()
    except ConnectorError as exc:
        log.warning("push for account %s: could not %s: %s", account_id, what, exc)
