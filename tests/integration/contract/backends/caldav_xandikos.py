"""CalDAV connector against a real Xandikos server, behind the fault proxy.

Each scenario gets a new calendar on the process's Xandikos (see ``_servers``).
``expire_token`` makes Xandikos forget its history (``XandikosServer.forget_sync_history``:
the collection's description changes, its git history is squashed and pruned): any
earlier token is then refused with ``412`` and ``<D:valid-sync-token/>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.contract.backends import _servers
from tests.integration.contract.backends._caldav import CalDavBackend, caldav_backend

NAME = "caldav-xandikos"


@contextmanager
def open_backend(tmp_path: Path) -> Iterator[CalDavBackend]:
    server = _servers.xandikos()
    url = server.new_calendar(_servers.fresh_name())
    with caldav_backend(NAME, server.url, url, lambda: server.forget_sync_history(url)) as backend:
        yield backend
