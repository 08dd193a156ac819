"""CalDAV connector against a real Radicale 3 server, behind the fault proxy.

Each scenario gets a new calendar on the process's Radicale (see ``_servers``).
``expire_token`` deletes the collection's stored sync-token states
(``.Radicale.cache/sync-token/*``): Radicale then refuses any earlier token with
``403`` and ``<D:valid-sync-token/>`` once the collection has changed since (a token
naming the current state is still answered "nothing changed", without the file).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from tests.integration.contract.backends import _servers
from tests.integration.contract.backends._caldav import CalDavBackend, caldav_backend

NAME = "caldav-radicale"


def _forget_sync_tokens(storage_folder: Path, calendar_url: str) -> None:
    collection = urlsplit(calendar_url).path.strip("/")
    for folder in storage_folder.rglob("sync-token"):
        if folder.parent.name == ".Radicale.cache" and folder.parent.parent.as_posix().endswith(
            "/" + collection
        ):
            shutil.rmtree(folder)


@contextmanager
def open_backend(tmp_path: Path) -> Iterator[CalDavBackend]:
    server = _servers.radicale()
    url = server.new_calendar(_servers.fresh_name(), user="manager")
    with caldav_backend(
        NAME, server.url, url, lambda: _forget_sync_tokens(server.storage_folder, url)
    ) as backend:
        yield backend
