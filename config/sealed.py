"""Secrets the service obtains itself, encrypted at rest: ``{"encrypted": "<token>"}``.

OAuth refresh tokens and passwords typed into the web form have no environment variable,
file or command to come from, so they are stored in the account's settings as a Fernet
token. The Fernet keys are derived (HKDF-SHA256, a label of their own) from the app's
secret (``web.secret_key``, else the generated ``data_dir/secret.key``), so the signing of
links and the encryption of secrets never share a key. Rotation: the first secret encrypts,
every one of them decrypts (``MultiFernet``).

Who resolves an ``encrypted`` reference? ``connectors.registry.secret`` is called with bare
account settings by the jobs, the runner and the services, so the composition root installs
the process's keyring here once (``install``) and ``SecretRef.resolve`` reads it. Code that
encrypts uses a keyring it built from the settings it holds (``Keyring.from_secrets``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"exec-assistant/account-secrets/v1"
UNREADABLE = "stored secret cannot be read: reconnect the account"


class UnreadableSecret(ValueError):
    """An encrypted secret no current key opens (the app's secret changed), or no keyring."""

    def __init__(self, message: str = UNREADABLE) -> None:
        super().__init__(message)


def _fernet_key(secret: str) -> bytes:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        secret.encode("utf-8")
    )
    return base64.urlsafe_b64encode(raw)


class Keyring:
    """Encrypts with the first secret's key, decrypts with any of them."""

    def __init__(self, secrets: Sequence[str]) -> None:
        usable = [s for s in secrets if s]
        if not usable:
            raise ValueError("a keyring needs at least one secret")
        self._fernet = MultiFernet([Fernet(_fernet_key(s)) for s in usable])

    @classmethod
    def from_secrets(cls, secrets: Sequence[str]) -> Keyring:
        return cls(secrets)

    def seal(self, plaintext: str) -> dict[str, str]:
        """The secret reference to store: ``{"encrypted": token}``."""
        if not plaintext:
            raise ValueError("nothing to encrypt")
        return {"encrypted": self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")}

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError):
            raise UnreadableSecret() from None

    def rotate(self, token: str) -> str:
        """The same secret encrypted with the first key (after a rotation)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError, ValueError):
            raise UnreadableSecret() from None


_installed: Keyring | None = None
_reload: Callable[[], Keyring] | None = None


def install(keyring: Keyring | None) -> None:
    """Make ``keyring`` the one ``{"encrypted": ...}`` references are opened with (and forget
    any ``reload_with``)."""
    global _installed, _reload
    _installed, _reload = keyring, None


def reload_with(build: Callable[[], Keyring] | None) -> None:
    """How to build the keyring again from the key files: a running service whose key was
    rotated (``assistant keys rotate``, another process) opens the re-sealed secrets."""
    global _reload
    _reload = build


def installed() -> Keyring | None:
    return _installed


def open_sealed(token: str) -> str:
    """Decrypt with the installed keyring (built again from the key files once, when it does
    not open ``token``); UnreadableSecret when that is impossible."""
    global _installed
    if _installed is None:
        raise UnreadableSecret("no key to read encrypted secrets is installed in this process")
    try:
        return _installed.open(token)
    except UnreadableSecret:
        if _reload is None:
            raise
    try:  # the key may have been rotated since this process started
        fresh = _reload()
    except Exception:  # the key files cannot be read now: as unreadable as before
        raise UnreadableSecret() from None
    opened = fresh.open(token)
    _installed = fresh
    return opened
