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
