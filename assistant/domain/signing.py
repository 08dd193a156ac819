"""Signed, expiring, single-purpose tokens for one-click links (no login).

A token is ``v1.<body>.<mac>``: ``body`` is base64url (no padding) of compact JSON
``{"p": purpose, "x": expires_at_epoch_seconds, "d": payload}``; ``mac`` is base64url of
HMAC-SHA256 over ``b"exec-assistant/token/v1\\0" + body`` with the secret. The purpose sits inside
the signed body, so a token minted for one use (``"feedback"``) is refused for another
(``"ics-feed"``) with a clear :class:`WrongPurpose` rather than a generic failure. The payload is
readable by whoever holds the link (it is signed, not encrypted): put ids in it, not secrets.

Rotation: pass a list of secrets; the first signs, any of them verifies. Time is an argument
(``expires_at`` to sign, ``now`` to verify); nothing here reads a clock.

Why the standard library rather than itsdangerous: ``TimestampSigner`` stamps the signing time
from ``time.time()`` and checks a ``max_age`` against the clock at verification, which breaks the
"time is injected" rule and puts the lifetime in the verifier instead of the link; the remaining
part (HMAC, base64url, JSON) is a few lines with ``hmac.compare_digest``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

VERSION = "v1"
MIN_SECRET_BYTES = 16
MAX_TOKEN_CHARS = 4096
_DOMAIN = b"exec-assistant/token/v1\x00"

Secret = str | bytes
Secrets = Secret | Sequence[Secret]


class TokenErrorKind(StrEnum):
    MALFORMED = "malformed"
    TAMPERED = "tampered"
    WRONG_PURPOSE = "wrong_purpose"
    EXPIRED = "expired"


class TokenError(ValueError):
    """A link token that cannot be honoured; ``kind`` says why."""

    kind: TokenErrorKind


class MalformedToken(TokenError):
    """Not a token of ours at all: wrong shape, bad encoding, too long."""

    kind = TokenErrorKind.MALFORMED


class TamperedToken(TokenError):
    """Well formed, but no current secret signed it (edited, forged, or the secret retired)."""

    kind = TokenErrorKind.TAMPERED


class WrongPurpose(TokenError):
    """Genuine, but minted for another use."""

    kind = TokenErrorKind.WRONG_PURPOSE

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"token is for {actual!r}, not {expected!r}")
        self.expected, self.actual = expected, actual


class ExpiredToken(TokenError):
    """Genuine and for this purpose, but past its expiry; the payload is still trustworthy
    (so a page can say *which* task's link expired and offer a fresh one)."""

    kind = TokenErrorKind.EXPIRED

    def __init__(self, expired_at: datetime, payload: dict[str, Any]) -> None:
        super().__init__(f"token expired at {expired_at.isoformat()}")
        self.expired_at, self.payload = expired_at, payload


# ----------------------------------------------------------------------------- helpers


def _keys(secrets: Secrets) -> list[bytes]:
    items: Sequence[Secret] = [secrets] if isinstance(secrets, str | bytes) else secrets
    keys = [s.encode() if isinstance(s, str) else bytes(s) for s in items]
    if not keys:
        raise ValueError("at least one signing secret is needed")
    for k in keys:
        if len(k) < MIN_SECRET_BYTES:
            raise ValueError(f"a signing secret needs at least {MIN_SECRET_BYTES} bytes")
    return keys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict base64url: only the canonical encoding of some bytes is accepted, so no two
    different strings decode to the same bytes (spare trailing bits, stray characters)."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedToken("token is not valid base64url") from None
    if _b64(data) != text:
        raise MalformedToken("token is not canonical base64url")
    return data


def _mac(key: bytes, body: str) -> bytes:
    return hmac.new(key, _DOMAIN + body.encode("ascii"), hashlib.sha256).digest()


def _epoch(name: str, t: datetime) -> int:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {t.isoformat()}")
    return int(t.timestamp() // 1)


# -------------------------------------------------------------------------------- API


def sign(secrets: Secrets, purpose: str, payload: dict[str, Any], expires_at: datetime) -> str:
    """A URL-safe token carrying ``payload`` (JSON-able; tuples come back as lists) for
    ``purpose`` until ``expires_at`` (whole seconds, rounded down)."""
    if not purpose:
        raise ValueError("a token needs a purpose")
    if not isinstance(payload, dict):
        raise TypeError(f"the payload must be a dict, got {type(payload).__name__}")
    doc = {"p": purpose, "x": _epoch("expires_at", expires_at), "d": payload}
    try:
        raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:  # NaN / infinity
        raise ValueError(f"the payload cannot be signed: {exc}") from None
    body = _b64(raw.encode("utf-8"))
    return f"{VERSION}.{body}.{_b64(_mac(_keys(secrets)[0], body))}"


def verify(secrets: Secrets, purpose: str, token: str, now: datetime) -> dict[str, Any]:
    """The payload of a genuine, unexpired ``token`` minted for ``purpose``.

    Raises :class:`MalformedToken`, :class:`TamperedToken`, :class:`WrongPurpose` or
    :class:`ExpiredToken` (all :class:`TokenError`, a ``ValueError``), checked in that order:
    nothing in the body is believed before the signature is.
    """
    keys = _keys(secrets)
    current = _epoch("now", now)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise MalformedToken("not a token")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION or not parts[1] or not parts[2]:
        raise MalformedToken("not a token of this service")
    _, body, mac_text = parts
    mac = _unb64(mac_text)
    _unb64(body)  # the body's encoding is checked even though the MAC covers its text
    if not any(hmac.compare_digest(mac, _mac(k, body)) for k in keys):
        raise TamperedToken("token signature does not match")
    try:
        doc = json.loads(_unb64(body).decode("utf-8"))
        actual, expires, payload = doc["p"], doc["x"], doc["d"]
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError):
        raise MalformedToken("signed token has an unreadable body") from None
    if not (isinstance(actual, str) and isinstance(expires, int) and isinstance(payload, dict)):
        raise MalformedToken("signed token has an unexpected body")
    if actual != purpose:
        raise WrongPurpose(purpose, actual)
    if current >= expires:
        raise ExpiredToken(datetime.fromtimestamp(expires, UTC), payload)
    return payload
