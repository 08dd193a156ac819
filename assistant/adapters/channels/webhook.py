"""The webhook channel: one outbox entry, one signed JSON POST.

The request
-----------
``POST <url>`` with ``Content-Type: application/json; charset=utf-8`` and these headers:

``Idempotency-Key``
    The entry's idempotency key (or ``sha256:<hex>`` of it when the key is not a
    printable ASCII header value). Every attempt of one entry carries the same key:
    a receiver that stores the keys it has processed drops duplicates.
``X-Exec-Assistant-Signature``
    ``t=<unix seconds>,v1=<hex>``: ``v1`` is HMAC-SHA256, keyed with the shared secret,
    of ``"<t>." + raw body``, in lower-case hex (Stripe's scheme). Each attempt is
    signed afresh, so ``t`` is the time of the attempt, not of the notification.
``X-Exec-Assistant-Payload-Version``
    ``1``, the ``version`` of the body below.

The body, version 1 (UTF-8 JSON; fields may be added within a version, never removed
or changed in meaning)::

    {
      "version": 1,
      "type": "notification",
      "id": "changes:12:sam@example.com:webhook",   # = the Idempotency-Key header
      "pair_id": 3,                 # or null
      "recipient": "sam@example.com",
      "subject": "Schedule: board meeting moved",
      "text": "...",                # the plain-text message
      "html": "...",                # the HTML message, "" when none
      "changes": [...],             # the structured changes when the message has them, else null
      "data": {"batch_id": 12, "kinds": ["moved"]},  # the rest of the entry's payload
      "created_at": "2026-11-24T09:00:00+00:00"      # when the entry was made, or null
    }

The body of one entry is the same bytes on every attempt.

Answers: any 2xx is delivered. 408, 429, 5xx, time-outs and network errors are
temporary (retried with back-off, honouring ``Retry-After`` in seconds or as an HTTP
date, at most a day). Any other status, redirects included, is permanent: the entry
goes to the dead letters.

How a receiver verifies a request
---------------------------------
1. Read the raw body bytes, before any JSON parsing (re-serialising changes them).
2. Split ``X-Exec-Assistant-Signature`` on ``,`` into ``key=value`` items; take ``t``
   and every ``v1`` (other schemes are ignored).
3. Compute ``hex(HMAC-SHA256(secret, f"{t}.".encode() + body))`` and compare it with
   each ``v1`` in constant time (``hmac.compare_digest``); none equal → reject (400).
4. Reject when ``t`` is more than the tolerance (5 minutes) away from the receiver's
   clock: a captured request cannot be replayed later.
5. Drop a request whose ``Idempotency-Key`` was already processed, answering 2xx: this
   stops a replay within the tolerance and our own retries after a lost answer. Keep
   processed keys at least as long as the outbox retries (hours, not minutes).

In Python, ``verify_signature(secret, header, body, now=..., tolerance=300)`` does
steps 2-4 and raises ``SignatureError`` saying why.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretBytes, SecretStr

from assistant.domain.text import one_line
from assistant.services.outbox import DeliveryError, OutboxMessage
from config.settings import ConfigError

PAYLOAD_VERSION = 1
SIGNATURE_HEADER = "X-Exec-Assistant-Signature"
VERSION_HEADER = "X-Exec-Assistant-Payload-Version"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "exec-assistant-webhook/1"
DEFAULT_TOLERANCE_SECONDS = 300.0
MAX_RETRY_AFTER_SECONDS = 86_400.0
TEMPORARY_STATUSES = frozenset({408, 429})
MAX_KEY_HEADER_CHARS = 200

Secret = SecretStr | str | bytes


class SignatureError(ValueError):
    """A webhook request's signature does not verify (the message says why)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _secret_bytes(secret: Secret) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def _digest(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def sign(secret: Secret, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={_digest(_secret_bytes(secret), timestamp, body)}"


def verify_signature(
    secret: Secret,
    header: str | None,
    body: bytes,
    now: datetime,
    tolerance: timedelta | float = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check a request's signature header against its raw ``body``; return its timestamp.

    Raises ``SignatureError`` when the header is missing or malformed, when no ``v1``
    signature matches, or when the timestamp is more than ``tolerance`` (seconds) from
    ``now`` either way.
    """
    if not header:
        raise SignatureError(f"no {SIGNATURE_HEADER} header")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise SignatureError("the signature header has no valid timestamp")
    if not signatures:
        raise SignatureError("the signature header has no v1 signature")
    timestamp = int(timestamps[0])
    expected = _digest(_secret_bytes(secret), timestamp, body)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise SignatureError("no v1 signature matches the body")
    limit = tolerance.total_seconds() if isinstance(tolerance, timedelta) else float(tolerance)
    age = now.timestamp() - timestamp
    if abs(age) > limit:
        when = "old" if age > 0 else "far in the future"
        raise SignatureError(f"the timestamp is {abs(age):.0f}s {when} (tolerance {limit:.0f}s)")
    return timestamp


def delivery_id(key: str) -> str:
    """The ``Idempotency-Key`` header (and payload ``id``) for an outbox key."""
    if key and len(key) <= MAX_KEY_HEADER_CHARS and key.isascii() and key.isprintable():
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def build_payload(message: OutboxMessage) -> dict[str, Any]:
    """The version-1 JSON document for ``message`` (see the module docstring)."""
    data = dict(message.payload)
    changes = data.pop("changes", None)
    # OutboxMessage does not carry the entry's pair and creation time yet: take them from
    # the message when it does, else from the payload, else null.
    pair_id = data.pop("pair_id", None)
    created_at = data.pop("created_at", None)
    pair_id = getattr(message, "pair_id", None) or pair_id
    created_at = getattr(message, "created_at", None) or created_at
    if isinstance(created_at, datetime):
        if created_at.tzinfo is None:  # the store keeps UTC
            created_at = created_at.replace(tzinfo=UTC)
        created_at = created_at.isoformat()
    return {
        "version": PAYLOAD_VERSION,
        "type": "notification",
        "id": delivery_id(message.key),
        "pair_id": pair_id,
        "recipient": message.recipient,
        "subject": one_line(message.subject),
        "text": message.body_text,
        "html": message.body_html,
        "changes": changes,
        "data": data,
        "created_at": created_at,
    }


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; the same payload always gives the same bytes."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode(
        "utf-8"
    )


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from ``now`` that a ``Retry-After`` value asks for (delta or HTTP date),
    capped at a day; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    seconds: float
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class WebhookChannel:
    """POSTs outbox entries as signed JSON to one URL (see the module docstring)."""

    def __init__(
        self,
        url: str,
        secret: Secret,
        timeout: float = 10,
        clock: Callable[[], datetime] = _utc_now,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        problems = []
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(("webhook.url", "must be an http:// or https:// URL with a host"))
        if not _secret_bytes(secret):
            problems.append(("webhook.secret", "must not be empty"))
        if timeout <= 0:
            problems.append(("webhook.timeout", "must be positive"))
        if problems:
            raise ConfigError(problems)
        self.url = url
        self._secret = SecretBytes(_secret_bytes(secret))  # not shown by repr()
        self.timeout = timeout
        self.clock = clock
        self._verify = verify
        # Paths and query strings often hold tokens: messages name the origin only.
        self.origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    def __repr__(self) -> str:
        return f"WebhookChannel({self.origin})"

    def request_for(self, message: OutboxMessage, now: datetime) -> tuple[dict[str, str], bytes]:
        """The headers and body of the POST for ``message`` sent at ``now``."""
        body = encode_payload(build_payload(message))
        timestamp = int(now.timestamp())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: delivery_id(message.key),
            SIGNATURE_HEADER: sign(self._secret.get_secret_value(), timestamp, body),
            VERSION_HEADER: str(PAYLOAD_VERSION),
        }
        return headers, body

    def send(self, message: OutboxMessage) -> None:
        headers, body = self.request_for(message, self.clock())
        try:
            with (
                httpx.Client(
                    timeout=self.timeout, follow_redirects=False, verify=self._verify
                ) as client,
                client.stream("POST", self.url, content=body, headers=headers) as response,
            ):
                if response.is_success:
                    return
                snippet = _snippet(response)
        except httpx.TimeoutException:
            raise DeliveryError(
                f"webhook {self.origin}: no answer within {self.timeout:g}s"
            ) from None
        except httpx.HTTPError as exc:  # refused, reset, DNS, TLS...
            raise DeliveryError(
                f"webhook {self.origin}: cannot connect: {type(exc).__name__}"
            ) from None
        status = response.status_code
        text = f"webhook {self.origin}: HTTP {status} {response.reason_phrase}".rstrip()
        if snippet:
            text += f": {snippet}"
        if status in TEMPORARY_STATUSES or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock())
            raise DeliveryError(text, retry_after=retry_after)
        raise DeliveryError(text, permanent=True)


def _snippet(response: httpx.Response, limit: int = 160) -> str:
    """The start of an error answer's body, on one line (the rest is not read)."""
    raw = b""
    try:
        for chunk in response.iter_bytes():
            raw += chunk
            if len(raw) >= limit * 4:
                break
    except httpx.HTTPError:
        pass
    text = raw.decode(response.encoding or "utf-8", "replace")
    return " ".join(text.split())[:limit]
