"""Microsoft Graph change notifications for the manager's events: subscriptions and receipt.

Sending side (:class:`GraphSubscriptions`, over the calendar's own Graph client, so it
shares its tokens, retries and error translation):

* ``create``: ``POST /subscriptions`` for ``/users/{id}/events`` (created, updated,
  deleted) with a random ``clientState`` (a secret Graph sends back with every
  notification), a ``notificationUrl`` and a ``lifecycleNotificationUrl``. Graph first
  validates both URLs: it POSTs ``?validationToken=...`` to each and expects the token
  back as ``text/plain`` with 200 within 10 seconds (:func:`handle_graph_notification`
  does that), else the creation fails (400).
* ``renew``: ``PATCH /subscriptions/{id}`` with a new ``expirationDateTime``. Outlook
  events allow at most 10,080 minutes (7 days); we ask for ``lifetime`` (default 7 days
  less 10 minutes) and renew once less than ``renew_before`` (default a day) is left, so
  a service down for hours still renews in time. A renewal Graph refuses with 404 (the
  subscription expired or was removed) creates a new one in ``ensure``.
* ``delete``: ``DELETE /subscriptions/{id}`` (404 counts as done).

A subscription is a value (:class:`GraphSubscription`) the caller stores, like a change
token; nothing is kept here.

Receiving side: :func:`handle_graph_notification` is pure (no I/O). It answers the
validation handshake, checks each notification's ``clientState`` against the secret of
its subscription (constant-time compare) and reports, per subscription, a ``change`` or a
lifecycle event: ``reauthorizationRequired`` (renew: a PATCH both reauthorizes and
extends), ``subscriptionRemoved`` (create a new subscription, then sync) or ``missed``
(notifications were lost: sync). A change notification carries no data we use; the
caller syncs the account with its delta token, which is cheap and never misses anything.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from connectors.base import InvalidData, NotFound
from connectors.push import PushReply

if TYPE_CHECKING:
    from connectors.graph.calendar import GraphCalendar

MAX_LIFETIME = timedelta(minutes=10080)  # Graph's limit for Outlook events
LIFETIME = MAX_LIFETIME - timedelta(minutes=10)
RENEW_BEFORE = timedelta(days=1)
CHANGE_TYPES = "created,updated,deleted"
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})

GraphKind = Literal["change", "reauthorizationRequired", "subscriptionRemoved", "missed"]


@dataclass(frozen=True, slots=True)
class GraphSubscription:
    """A Graph subscription as the caller stores it. ``client_state`` is a secret."""

    id: str
    resource: str
    client_state: str
    expires: datetime  # UTC


class GraphSubscriptions:
    """Create, renew and delete change-notification subscriptions for one calendar."""

    def __init__(
        self,
        calendar: GraphCalendar,
        notification_url: str,
        lifecycle_url: str = "",
        *,
        lifetime: timedelta = LIFETIME,
        renew_before: timedelta = RENEW_BEFORE,
        change_types: str = CHANGE_TYPES,
    ) -> None:
        if not timedelta(0) < lifetime <= MAX_LIFETIME:
            raise ValueError(f"a subscription lives at most {MAX_LIFETIME} for Outlook events")
        if not timedelta(0) <= renew_before < lifetime:
            raise ValueError("renew_before must be shorter than the lifetime")
        self.calendar = calendar
        self.notification_url = notification_url
        self.lifecycle_url = lifecycle_url
        self.lifetime = lifetime
        self.renew_before = renew_before
        self.change_types = change_types
        self.resource = f"/users/{calendar.user}/events"
        self._url = f"{calendar.graph_url}/subscriptions"

    def create(self, now: datetime) -> GraphSubscription:
        client_state = secrets.token_urlsafe(32)  # Graph allows up to 128 characters
        body: dict[str, Any] = {
            "changeType": self.change_types,
            "notificationUrl": self.notification_url,
            "resource": self.resource,
            "expirationDateTime": _stamp(now + self.lifetime),
            "clientState": client_state,
            "latestSupportedTlsVersion": "v1_2",
        }
        if self.lifecycle_url:
            body["lifecycleNotificationUrl"] = self.lifecycle_url
        reply = self.calendar._send("POST", self._url, json_body=body, idempotent=False)
        data = self._reply(reply, "create subscription")
        return GraphSubscription(
            id=str(data.get("id") or ""),
            resource=str(data.get("resource") or self.resource),
            client_state=client_state,
            expires=_expiry(data, now + self.lifetime),
        )

    def renew(self, subscription: GraphSubscription, now: datetime) -> GraphSubscription:
        """Extend (and reauthorize) it; NotFound when Graph no longer has it."""
        body = {"expirationDateTime": _stamp(now + self.lifetime)}
        reply = self.calendar._send("PATCH", self._sub_url(subscription.id), json_body=body)
        data = self._reply(reply, "renew subscription")
        return GraphSubscription(
            id=subscription.id,
            resource=subscription.resource,
            client_state=subscription.client_state,
            expires=_expiry(data, now + self.lifetime),
        )

    def delete(self, subscription: GraphSubscription) -> bool:
        """Delete it; False when Graph had already dropped it."""
        reply = self.calendar._send("DELETE", self._sub_url(subscription.id))
        if reply.status_code == 404:
            return False
        self._reply(reply, "delete subscription", empty=True)
        return True

    def needs_renewal(self, subscription: GraphSubscription, now: datetime) -> bool:
        return subscription.expires - now <= self.renew_before

    def ensure(self, subscription: GraphSubscription | None, now: datetime) -> GraphSubscription:
        """A live subscription: ``subscription`` itself, renewed when due, or a new one."""
        if subscription is None:
            return self.create(now)
        if subscription.expires <= now:
            return self.create(now)  # Graph deletes expired subscriptions
        if not self.needs_renewal(subscription, now):
            return subscription
        try:
            return self.renew(subscription, now)
        except NotFound:
            return self.create(now)

    def _sub_url(self, subscription_id: str) -> str:
        from urllib.parse import quote

        return f"{self._url}/{quote(subscription_id, safe='')}"

    def _reply(self, reply: Any, what: str, *, empty: bool = False) -> dict[str, Any]:
        from connectors.graph.client import fail

        if not reply.is_success:
            fail(reply, what)
        if empty:
            return {}
        return self.calendar._json(reply, what)


# ------------------------------------------------------------------- receiving side


def handle_graph_notification(
    body: bytes,
    query: Mapping[str, str],
    expected_client_states: Mapping[str, str],
) -> tuple[PushReply, list[tuple[str, GraphKind]]]:
    """The answer to one POST from Graph, and what it reports per subscription.

    ``expected_client_states`` maps our subscription ids to their secrets. A validation
    request (``?validationToken=``) is answered with the token as text/plain and 200.
    Notifications whose subscription is unknown, or whose clientState is not that
    subscription's, are dropped; a body with only forged ones is refused with 403 and
    anything else is acknowledged with 202 (Graph retries non-2xx answers for hours).
    """
    token = query.get("validationToken")
    if token is not None:
        return PushReply(200, token.encode("utf-8"), "text/plain; charset=utf-8"), []
    try:
        data = json.loads(body or b"null")
    except ValueError:
        return PushReply(400, b"not JSON"), []
    items = data.get("value") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return PushReply(400, b"no notifications"), []
    found: list[tuple[str, GraphKind]] = []
    forged = 0
    for item in items:
        if not isinstance(item, dict):
            continue
        sub_id = str(item.get("subscriptionId") or "")
        expected = expected_client_states.get(sub_id)
        if expected is None:
            continue  # not ours (any more): acknowledged, ignored
        given = item.get("clientState")
        if not isinstance(given, str) or not hmac.compare_digest(
            given.encode("utf-8"), expected.encode("utf-8")
        ):
            forged += 1
            continue
        event = item.get("lifecycleEvent")
        kind: GraphKind = "change"
        if event is not None:
            if event not in LIFECYCLE_EVENTS:
                continue  # a lifecycle event we do not know
            kind = event
        if (sub_id, kind) not in found:
            found.append((sub_id, kind))
    if forged and not found:
        return PushReply(403, b"refused"), []
    return PushReply(202), found


def graph_subscription_ids(body: bytes) -> list[str]:
    """The subscription ids a notification body names (to look their secrets up)."""
    try:
        data = json.loads(body or b"null")
    except ValueError:
        return []
    items = data.get("value") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    return sorted({str(i["subscriptionId"]) for i in items
                   if isinstance(i, dict) and i.get("subscriptionId")})  # fmt: skip


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _expiry(data: Mapping[str, Any], fallback: datetime) -> datetime:
    raw = data.get("expirationDateTime")
    if not raw:
        return fallback.astimezone(UTC)
    text = str(raw).replace("Z", "+00:00")
    if "." in text:  # Graph sends 7 fractional digits; Python reads at most 6
        head, _, tail = text.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        text = f"{head}.{digits[:6]}{tail[len(digits) :]}"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidData(f"Graph: bad expirationDateTime {raw!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
