"""Signed one-click link tokens: round trip, expiry, purpose, tampering, rotation."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.domain.signing import (
    ExpiredToken,
    MalformedToken,
    TamperedToken,
    TokenError,
    TokenErrorKind,
    WrongPurpose,
    sign,
    verify,
)

SECRET = "correct horse battery staple"
OLD = "the retired secret, still valid"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=7)


def token(payload: dict[str, Any] | None = None, **kw: Any) -> str:
    args: dict[str, Any] = {"secrets": SECRET, "purpose": "feedback", "expires_at": LATER}
    args.update(kw)
    return sign(args["secrets"], args["purpose"], payload or {"task": 7}, args["expires_at"])


def test_round_trip_and_url_safe() -> None:
    t = token({"task": 7, "line": "red_line", "who": "анна@example.com"})
    assert verify(SECRET, "feedback", t, NOW) == {
        "task": 7,
        "line": "red_line",
        "who": "анна@example.com",
    }
    assert set(t) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    assert t.startswith("v1.")


def test_expiry_is_exclusive_and_uses_the_passed_time() -> None:
    t = token(expires_at=LATER)
    assert verify(SECRET, "feedback", t, LATER - timedelta(seconds=1)) == {"task": 7}
    with pytest.raises(ExpiredToken) as exc:
        verify(SECRET, "feedback", t, LATER)
    assert exc.value.kind is TokenErrorKind.EXPIRED
    assert exc.value.expired_at == LATER
    assert exc.value.payload == {"task": 7}  # genuine: the page may say which task


def test_expiry_compares_instants_not_wall_clocks() -> None:
    moscow = timezone(timedelta(hours=3))
    t = token(expires_at=datetime(2026, 11, 24, 15, 0, tzinfo=moscow))  # 12:00 UTC
    assert verify(SECRET, "feedback", t, datetime(2026, 11, 24, 11, 59, tzinfo=UTC))
    with pytest.raises(ExpiredToken):
        verify(SECRET, "feedback", t, datetime(2026, 11, 24, 12, 0, tzinfo=UTC))


def test_wrong_purpose_is_named() -> None:
    t = token(purpose="ics-feed")
    with pytest.raises(WrongPurpose) as exc:
        verify(SECRET, "feedback", t, NOW)
    assert (exc.value.expected, exc.value.actual) == ("feedback", "ics-feed")
    assert exc.value.kind is TokenErrorKind.WRONG_PURPOSE


def test_wrong_purpose_is_checked_before_expiry() -> None:
    t = token(purpose="ics-feed", expires_at=NOW - timedelta(days=1))
    with pytest.raises(WrongPurpose):
        verify(SECRET, "feedback", t, NOW)


def test_other_secret_is_tampered() -> None:
    t = token(secrets="another secret of enough length")
    with pytest.raises(TamperedToken) as exc:
        verify(SECRET, "feedback", t, NOW)
    assert exc.value.kind is TokenErrorKind.TAMPERED


def test_rotation_first_signs_all_verify() -> None:
    old_token = token(secrets=OLD)
    new_token = token(secrets=[SECRET, OLD])
    assert verify([SECRET, OLD], "feedback", old_token, NOW) == {"task": 7}
    assert verify([SECRET, OLD], "feedback", new_token, NOW) == {"task": 7}
    assert verify(SECRET, "feedback", new_token, NOW) == {"task": 7}  # signed by the first
    with pytest.raises(TamperedToken):
        verify(OLD, "feedback", new_token, NOW)
    with pytest.raises(TamperedToken):  # the old secret retired
        verify([SECRET], "feedback", old_token, NOW)


def _forge(body_doc: Any) -> str:
    """A token whose body says anything, with a signature made by someone else."""
    good = token()
    body = base64.urlsafe_b64encode(json.dumps(body_doc).encode()).rstrip(b"=").decode()
    return f"v1.{body}.{good.split('.')[2]}"


def test_edited_body_is_tampered_even_with_a_real_signature() -> None:
    forged = _forge({"p": "feedback", "x": int(LATER.timestamp()) + 10**6, "d": {"task": 8}})
    with pytest.raises(TamperedToken):
        verify(SECRET, "feedback", forged, NOW)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "v1",
        "v1..",
        "v1.abc",
        "v2." + "A" * 10 + "." + "B" * 43,
        "v1.abc.def.ghi",
        "v1.ab$c.def",
        "v1.abc.d e f",
        "v1.абв.где",
        "x" * 5000,
        "v1.abc." + "A" * 42 + "B",  # non-canonical base64 (spare bits set)
    ],
)
def test_malformed(bad: str) -> None:
    with pytest.raises(MalformedToken) as exc:
        verify(SECRET, "feedback", bad, NOW)
    assert exc.value.kind is TokenErrorKind.MALFORMED


def test_not_a_string_is_malformed() -> None:
    with pytest.raises(MalformedToken):
        verify(SECRET, "feedback", None, NOW)  # type: ignore[arg-type]


def test_errors_are_value_errors_with_a_kind() -> None:
    for cls in (MalformedToken, TamperedToken, WrongPurpose, ExpiredToken):
        assert issubclass(cls, TokenError)
        assert issubclass(cls, ValueError)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sign(SECRET, "feedback", {}, datetime(2026, 12, 1)), "aware"),
        (lambda: verify(SECRET, "feedback", token(), datetime(2026, 12, 1)), "aware"),
        (lambda: sign("short", "feedback", {}, LATER), "at least 16 bytes"),
        (lambda: sign([], "feedback", {}, LATER), "at least one"),
        (lambda: verify([SECRET, "short"], "feedback", token(), NOW), "at least 16 bytes"),
        (lambda: sign(SECRET, "", {}, LATER), "purpose"),
        (lambda: sign(SECRET, "feedback", {"x": float("nan")}, LATER), "cannot be signed"),
    ],
)
def test_refuses_bad_arguments(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_payload_must_be_a_dict() -> None:
    with pytest.raises(TypeError):
        sign(SECRET, "feedback", [1, 2], LATER)  # type: ignore[arg-type]


def test_bytes_secret_equals_its_utf8_text() -> None:
    t = token(secrets=SECRET.encode())
    assert verify(SECRET, "feedback", t, NOW) == {"task": 7}


# ---------------------------------------------------------------------------- properties

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(max_size=10), json_values, max_size=5)
purposes = st.text(min_size=1, max_size=20)
secrets = st.binary(min_size=16, max_size=64)
offsets = st.integers(min_value=1, max_value=10 * 365 * 86400)


@settings(max_examples=80, deadline=None)
@given(payload=payloads, purpose=purposes, secret=secrets, ttl=offsets)
def test_any_payload_round_trips(
    payload: dict[str, Any], purpose: str, secret: bytes, ttl: int
) -> None:
    t = sign(secret, purpose, payload, NOW + timedelta(seconds=ttl))
    assert verify(secret, purpose, t, NOW) == payload
    with pytest.raises(ExpiredToken):
        verify(secret, purpose, t, NOW + timedelta(seconds=ttl))


@settings(max_examples=120, deadline=None)
@given(
    payload=payloads,
    data=st.data(),
    replacement=st.characters(codec="utf-8") | st.sampled_from("AQgw-_.0aBz="),
)
def test_any_single_character_change_is_refused(
    payload: dict[str, Any], data: st.DataObject, replacement: str
) -> None:
    t = sign(SECRET, "feedback", payload, LATER)
    i = data.draw(st.integers(min_value=0, max_value=len(t) - 1), label="position")
    if t[i] == replacement:
        replacement = "A" if t[i] != "A" else "B"
    changed = t[:i] + replacement + t[i + 1 :]
    with pytest.raises(TokenError) as exc:
        verify(SECRET, "feedback", changed, NOW)
    assert exc.value.kind in (TokenErrorKind.MALFORMED, TokenErrorKind.TAMPERED)


@settings(max_examples=100, deadline=None)
@given(payload=payloads, data=st.data(), byte=st.integers(min_value=0, max_value=255))
def test_any_single_byte_change_is_refused(
    payload: dict[str, Any], data: st.DataObject, byte: int
) -> None:
    raw = bytearray(sign(SECRET, "feedback", payload, LATER).encode())
    i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1), label="position")
    if raw[i] == byte:
        byte = (byte + 1) % 256
    raw[i] = byte
    changed = raw.decode("latin-1")
    with pytest.raises(TokenError):
        verify(SECRET, "feedback", changed, NOW)


@settings(max_examples=100, deadline=None)
@given(payload=payloads, cut=st.integers(min_value=1, max_value=40))
def test_truncated_or_extended_tokens_are_refused(payload: dict[str, Any], cut: int) -> None:
    t = sign(SECRET, "feedback", payload, LATER)
    for changed in (t[:-cut], t + "A" * cut):
        with pytest.raises(TokenError):
            verify(SECRET, "feedback", changed, NOW)
