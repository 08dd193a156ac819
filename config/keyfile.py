"""The app's key file: where it lives, how it is made, which keys verify and open.

The key signs one-click links (``assistant.domain.signing``) and, through HKDF, seals account
secrets (:mod:`config.sealed`). It comes from ``web.secret_key`` when the operator sets one;
otherwise it is generated once into ``data_dir/secret.key`` (mode 0600). A rotation keeps
the key it replaces in ``data_dir/secret.key.retired`` (one ``<retired at> <key>`` a line,
mode 0600): retired keys still verify links and open secrets, they never sign or seal.

What the database holds that needs the key (the start-up check, rotation, reset) is
``assistant.adapters.keys``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets as random
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.settings import Settings

log = logging.getLogger(__name__)

KEY_FILE = "secret.key"
RETIRED_FILE = "secret.key.retired"
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


class KeyProblem(ValueError):
    """The app's key cannot serve what the database holds; the message says what to do."""


# ------------------------------------------------------------------------------- files


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) as 0700; tighten it when others may read it."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(PRIVATE_DIR)


def private_file(path: Path) -> None:
    """Tighten an existing file to 0600 (no-op when it does not exist)."""
    with suppress(FileNotFoundError):
        if path.stat().st_mode & 0o077:
            path.chmod(PRIVATE_FILE)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically; the file is 0600 from its first byte."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{random.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def key_path(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE


def retired_path(settings: Settings) -> Path:
    return settings.data_dir / RETIRED_FILE


def from_settings(settings: Settings) -> bool:
    """True when the operator gives the key in the settings (``web.secret_key``)."""
    return settings.web.secret_key is not None


def read_key(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def retired_keys(settings: Settings) -> list[str]:
    """Keys replaced by ``assistant keys rotate``, newest first."""
    try:
        lines = retired_path(settings).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    keys = [line.split()[-1] for line in lines if line.strip()]
    return keys[::-1]


def current_key(settings: Settings, *, create: bool = True) -> str | None:
    """The key that signs and seals: ``web.secret_key``, else the key file (generated
    once when missing and ``create``)."""
    if settings.web.secret_key is not None:
        return settings.web.secret_key.resolve().get_secret_value()
    path = key_path(settings)
    key = read_key(path)
    if key is None and create:
        key = random.token_urlsafe(48)
        private_dir(path.parent)
        try:  # O_EXCL: two processes starting at once keep one key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        except FileExistsError:
            existing = read_key(path)
            if existing is None:
                raise KeyProblem(f"{path} exists but is empty: restore it from a backup") from None
            return existing
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(key)
    return key


def all_keys(settings: Settings, *, create: bool = True) -> list[str]:
    """The current key first (it signs and seals), then every retired one (they verify and
    open): the key file's predecessors and ``web.previous_secret_keys``."""
    current = current_key(settings, create=create)
    keys = [] if current is None else [current]
    if settings.web.secret_key is None:
        keys += retired_keys(settings)
    keys += [r.resolve().get_secret_value() for r in settings.web.previous_secret_keys]
    return [k for k in dict.fromkeys(keys) if k]


def fingerprint(key: str) -> str:
    """A short name for a key that reveals nothing of it."""
    return hashlib.sha256(b"exec-assistant/key-fingerprint\0" + key.encode()).hexdigest()[:12]


def describe(settings: Settings) -> str:
    return "web.secret_key" if from_settings(settings) else str(key_path(settings))


def tighten(settings: Settings) -> None:
    """Start-up: the data folder 0700; the database, queue and key files 0600. What does not
    exist is left to be made so (a deployment on PostgreSQL may have no data folder); what
    cannot be changed (another owner) is logged, not fatal."""
    folder = settings.data_dir
    paths = [folder / f"{name}{suffix}"
             for name in ("assistant.db", "queue.db", KEY_FILE, RETIRED_FILE)
             for suffix in ("", "-wal", "-shm", "-journal")]  # fmt: skip
    try:
        if folder.is_dir() and folder.stat().st_mode & 0o077:
            folder.chmod(PRIVATE_DIR)
        for path in paths:
            private_file(path)
    except PermissionError as exc:
        log.warning("cannot make %s private (mode 0700/0600): %s", exc.filename, exc.strerror)
