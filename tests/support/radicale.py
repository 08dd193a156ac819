"""Fixture ``radicale``: a real Radicale 3 CalDAV server on 127.0.0.1, one per test.

Radicale starts in about 0.2 s, so every test gets its own server and storage folder
(``tmp_path / "radicale"``). The yielded ``assistant.entrypoints.embedded.EmbeddedRadicale`` has
``.url`` (ends with "/"), ``.storage_folder``, ``.log_path`` and
``.new_calendar(name, user="manager") -> url``; the server is stopped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.entrypoints.embedded import EmbeddedRadicale


def start_radicale(folder: Path) -> EmbeddedRadicale:
    """A started server (the caller stops it); for tests that need one of their own."""
    return EmbeddedRadicale(folder).start()


@pytest.fixture
def radicale(tmp_path: Path) -> Iterator[EmbeddedRadicale]:
    with EmbeddedRadicale(tmp_path / "radicale") as server:
        yield server


class RadicaleWithLogins(EmbeddedRadicale):
    """Radicale that checks passwords (htpasswd, plain): a wrong one is a real 401.

    ``logins`` maps each user to their password; ``new_calendar`` logs in as the user.
    """

    def __init__(self, folder: Path, logins: dict[str, str]) -> None:
        super().__init__(folder)
        self.logins = dict(logins)
        self.htpasswd = self.folder / "htpasswd"

    def prepare(self) -> None:
        super().prepare()
        self.htpasswd.write_text("".join(f"{u}:{p}\n" for u, p in self.logins.items()))

    def command(self, port: int) -> list[str]:
        cmd = super().command(port)
        at = cmd.index("--auth-type")
        cmd[at + 1] = "htpasswd"
        return [
            *cmd,
            "--auth-htpasswd-filename", str(self.htpasswd),
            "--auth-htpasswd-encryption", "plain",
            "--rights-type", "owner_only",
        ]  # fmt: skip

    def new_calendar(self, name: str, user: str = "manager") -> str:
        import httpx

        url = f"{self.url}{user}/{name}/"
        with httpx.Client(timeout=10) as client:
            response = client.request("MKCALENDAR", url, auth=(user, self.logins[user]))
        if response.status_code != 201:
            raise RuntimeError(f"MKCALENDAR {url}: HTTP {response.status_code}")
        return url
