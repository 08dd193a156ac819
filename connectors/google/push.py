"""Google Calendar push notifications: watch channels on the manager's events, and receipt.

Sending side (:class:`GoogleWatches`, through the calendar's own client library
service, so it shares its credentials and error translation):

* ``start``: ``events.watch`` with a channel ``id`` (a UUID), a secret ``token`` that
  Google sends back in ``X-Goog-Channel-Token`` with every notification, ``type:
  web_hook``, the ``address`` (a public HTTPS URL) and ``params.ttl`` (seconds; Google's
  default and usual cap is a week). The answer names the ``resourceId`` (needed to stop
  the channel) and the ``expiration`` (ms since the epoch), which may be sooner than
  asked.
* Channels cannot be extended: ``renew`` starts a new channel and then stops the old one
  (an overlap, not a gap; a notification from either leads to the same sync). We renew
  once less than ``renew_before`` is left.
* ``stop``: ``channels.stop`` with the channel's id and resourceId (404: already gone).

A channel is a value (:class:`GoogleChannel`) the caller stores, like a sync token.
``start`` takes the channel id and token from the caller when given, so that they can be
registered before Google's first (``sync``) message can arrive.

Receiving side: :func:`handle_google_notification` is pure. It checks the channel's
token (constant-time compare) and tells ``sync`` (the channel now works; nothing changed)
from ``exists`` / ``not_exists`` (something changed: sync the account). Notifications
carry no event data; the caller's incremental sync with its sync token does the rest.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from connectors.base import InvalidData, NotFound
from connectors.push import PushReply

if TYPE_CHECKING:
    from connectors.google.calendar import GoogleCalendar

TTL = timedelta(days=7)
RENEW_BEFORE = timedelta(days=1)
GoogleKind = Literal["sync", "exists", "not_exists"]
_KINDS: dict[str, GoogleKind] = {"sync": "sync", "exists": "exists", "not_exists": "not_exists"}


@dataclass(frozen=True, slots=True)
class GoogleChannel:
    """A watch channel as the caller stores it. ``token`` is a secret."""

    id: str
    resource_id: str
    token: str
    expires: datetime  # UTC
    address: str = ""


class GoogleWatches:
    """Start, renew and stop ``events.watch`` channels on one calendar."""

    def __init__(
        self,
        calendar: GoogleCalendar,
        address: str,
        *,
        ttl: timedelta = TTL,
        renew_before: timedelta = RENEW_BEFORE,
    ) -> None:
        if not timedelta(0) <= renew_before < ttl:
            raise ValueError("renew_before must be shorter than the channel's ttl")
        self.calendar = calendar
        self.address = address
        self.ttl = ttl
        self.renew_before = renew_before

    def start(
        self, now: datetime, *, channel_id: str | None = None, token: str | None = None
    ) -> GoogleChannel:
        channel_id = channel_id or str(uuid.uuid4())
        token = token or secrets.token_urlsafe(32)
        body = {
            "id": channel_id,
            "token": token,
            "type": "web_hook",
            "address": self.address,
            "params": {"ttl": str(int(self.ttl.total_seconds()))},
        }
        cal = self.calendar
        reply = cal._execute(
            cal._events.watch(calendarId=cal.calendar_id, body=body), "events.watch"
        )
        if not isinstance(reply, dict) or not reply.get("resourceId"):
            raise InvalidData("Google events.watch: the answer names no resourceId")
        return GoogleChannel(
            id=str(reply.get("id") or channel_id),
            resource_id=str(reply["resourceId"]),
            token=token,
            expires=_expiry(reply.get("expiration"), now + self.ttl),
            address=self.address,
        )

    def stop(self, channel: GoogleChannel) -> bool:
        """Stop it; False when Google no longer knew it."""
        cal = self.calendar
        request = cal.channels().stop(body={"id": channel.id, "resourceId": channel.resource_id})
        try:
            cal._execute(request, "channels.stop")
        except NotFound:
            return False
        return True

    def needs_renewal(self, channel: GoogleChannel, now: datetime) -> bool:
        return channel.expires - now <= self.renew_before

    def renew(self, channel: GoogleChannel, now: datetime) -> GoogleChannel:
        """A new channel, then the old one stopped (no gap between them)."""
        fresh = self.start(now)
        self.stop(channel)
        return fresh

    def ensure(self, channel: GoogleChannel | None, now: datetime) -> GoogleChannel:
        """A live channel: ``channel`` itself, renewed when due, or a new one."""
        if channel is None or channel.expires <= now:
            return self.start(now)
        if channel.address != self.address or self.needs_renewal(channel, now):
            return self.renew(channel, now)
        return channel


# ------------------------------------------------------------------- receiving side


def handle_google_notification(
    headers: Mapping[str, str], expected_tokens: Mapping[str, str]
) -> tuple[PushReply, list[tuple[str, GoogleKind]]]:
    """The answer to one POST from Google, and what it reports.

    ``expected_tokens`` maps our channel ids to their tokens. A notification for an
    unknown channel is refused with 404, one with a wrong token with 403; a good one is
    answered 200 with ``[(channel id, "sync" | "exists" | "not_exists")]``.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    channel_id = lower.get("x-goog-channel-id", "")
    state = lower.get("x-goog-resource-state", "")
    if not channel_id or state not in _KINDS:
        return PushReply(400, b"not a Google channel notification"), []
    expected = expected_tokens.get(channel_id)
    if expected is None:
        return PushReply(404, b"unknown channel"), []
    given = lower.get("x-goog-channel-token", "")
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        return PushReply(403, b"refused"), []
    return PushReply(200), [(channel_id, _KINDS[state])]


def _expiry(raw: Any, fallback: datetime) -> datetime:
    if raw in (None, ""):
        return fallback.astimezone(UTC)
    try:
        return datetime.fromtimestamp(int(raw) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError):
        raise InvalidData(f"Google: bad channel expiration {raw!r}") from None
