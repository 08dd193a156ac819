"""Secrets encrypted at rest: the {"encrypted": ...} reference, its keys and their rotation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from config import sealed
from config.sealed import Keyring, UnreadableSecret
from config.settings import ConfigError, SecretRef
from connectors.base import AuthExpired
from connectors.settings import secret

OLD = "the old secret of the app, long enough"
NEW = "the new secret of the app, long enough"


@pytest.fixture(autouse=True)
def no_keyring() -> Iterator[None]:
    before = sealed.installed()
    sealed.install(None)
    yield
    sealed.install(before)


def test_sealed_secret_round_trips_and_is_not_readable_in_the_reference() -> None:
    ref = Keyring([NEW]).seal("1//refresh-token-value")
    assert set(ref) == {"encrypted"} and "refresh-token-value" not in ref["encrypted"]
    sealed.install(Keyring([NEW]))
    assert secret(ref) == "1//refresh-token-value"
    assert SecretRef(**ref).describe() == "encrypted"


def test_rotation_first_key_encrypts_every_key_decrypts() -> None:
    old_ref = Keyring([OLD]).seal("password one")
    rotated = Keyring([NEW, OLD])
    assert rotated.open(old_ref["encrypted"]) == "password one"
    new_ref = rotated.seal("password two")
    with pytest.raises(UnreadableSecret):
        Keyring([OLD]).open(new_ref["encrypted"])
    assert Keyring([NEW]).open(rotated.rotate(old_ref["encrypted"])) == "password one"


def test_an_unreadable_secret_is_a_reconnect_error_naming_no_value() -> None:
    ref = Keyring([OLD]).seal("hunter2 password")
    with pytest.raises(AuthExpired, match="stored secret cannot be read: reconnect"):
        secret(ref)  # no keyring installed
    sealed.install(Keyring([NEW]))
    with pytest.raises(AuthExpired, match="stored secret cannot be read: reconnect") as info:
        secret(ref)
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError):
        SecretRef(**ref).resolve()
    with pytest.raises(AuthExpired):
        secret({"encrypted": "not a token"})


def test_other_references_still_work_and_exactly_one_kind_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOME_SECRET", "from env")
    assert secret({"env": "SOME_SECRET"}) == "from env"
    with pytest.raises(ValueError, match="exactly one"):
        SecretRef(env="SOME_SECRET", encrypted="x")


def test_add_account_accepts_encrypted_references_only_well_formed() -> None:
    from assistant.services.pairs import check_secret_refs, public_settings

    ref = Keyring([NEW]).seal("pw")
    check_secret_refs({"password": ref, "refresh_token": {"env": "X"}})
    with pytest.raises(ValueError, match="must be a reference"):
        check_secret_refs({"password": "plain"})
    with pytest.raises(ValueError, match="exactly one"):
        check_secret_refs({"password": {"encrypted": "a", "env": "B"}})
    assert public_settings({"password": ref}) == {"password": "<encrypted reference>"}
