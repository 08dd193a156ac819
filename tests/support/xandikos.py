"""Fixture ``xandikos``: a real Xandikos CalDAV server on 127.0.0.1, one per test.

Xandikos (a git-backed CalDAV/CardDAV server) starts in about half a second as
``python -m xandikos.web --defaults`` on a free port with its data under a temporary
folder; there is no authentication. ``XandikosServer`` has ``.url`` (ends with "/"),
``.folder``, ``.log_path``, ``.new_calendar(name) -> url`` (MKCALENDAR under the
principal's calendar home, ``/user/calendars/``) and ``.forget_sync_history(url)``.

What differs from Radicale, as seen by a client:

* sync tokens are git tree ids of the collection; a token the server does not know
  is refused with ``412 Precondition Failed`` and ``<D:valid-sync-token/>``;
* sync-collection never returns calendar-data inline (the property comes back 404),
  so every changed resource is read with calendar-multiget;
* etags are the git blob ids of the stored objects.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from assistant.entrypoints.embedded import LocalServer, ServerFailed

PRINCIPAL = "/user/"
CALENDAR_HOME = "/user/calendars/"


class XandikosFailed(ServerFailed):
    """The Xandikos process did not start (its log tail is in the message)."""


class XandikosServer(LocalServer):
    """A Xandikos server on ``http://127.0.0.1:<port>/`` storing its data in ``folder``."""

    name = "Xandikos"
    failure = XandikosFailed

    def __init__(
        self, folder: Path, *, host: str = "127.0.0.1", startup_timeout: float = 20.0
    ) -> None:
        super().__init__(folder, "xandikos.log", host=host, startup_timeout=startup_timeout)
        self.data_folder = self.folder / "data"

    def command(self, port: int) -> list[str]:
        return [
            sys.executable, "-m", "xandikos.web",
            "--defaults",  # principal /user/ with calendars/ and contacts/ homes
            "-d", str(self.data_folder),
            "--state-dir", str(self.folder / "state"),
            "--no-detect-systemd",
            "-l", self.host,
            "-p", str(port),
        ]  # fmt: skip

    def new_calendar(self, name: str) -> str:
        """Create calendar ``name`` in the principal's calendar home; return its URL."""
        url = f"{self.url}{CALENDAR_HOME.strip('/')}/{name}/"
        with httpx.Client(timeout=10) as client:
            response = client.request("MKCALENDAR", url)
        if response.status_code != 201:
            raise XandikosFailed(f"MKCALENDAR {url}: HTTP {response.status_code}")
        return url

    def calendar_folder(self, url: str) -> Path:
        """The git working tree that holds the calendar at ``url``."""
        return self.data_folder / urlsplit(url).path.strip("/")

    def forget_sync_history(self, url: str) -> None:
        """Make the server forget every sync token it handed out for calendar ``url``.

        Xandikos's sync token is the git tree id of the collection and any tree still
        in the repository is accepted. The collection's description is changed over
        HTTP (PROPPATCH, as a client would: a new tree, no calendar object touched),
        then the history is squashed into one commit and every object no longer
        reachable is deleted, as after a history rewrite and ``git gc --prune=now``.
        Tokens issued before this call are answered with 412 valid-sync-token.
        """
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<d:propertyupdate xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
            f"<d:set><d:prop><c:calendar-description>history compacted {time.time_ns()}"
            "</c:calendar-description></d:prop></d:set></d:propertyupdate>"
        )
        with httpx.Client(timeout=10) as client:
            response = client.request(
                "PROPPATCH", url, content=body, headers={"Content-Type": "application/xml"}
            )
        if response.status_code != 207:
            raise XandikosFailed(f"PROPPATCH {url}: HTTP {response.status_code}")
        _squash_history(self.calendar_folder(url))


def _squash_history(path: Path) -> None:
    """Replace the branch's history by one commit of its tree; delete the rest."""
    from dulwich.objects import Blob, Commit, Tree
    from dulwich.repo import Repo

    with Repo(str(path)) as repo:
        head_ref: Any = b"HEAD"  # dulwich >= 1.0 types it as ``Ref``, a NewType of bytes
        head = repo[repo.head()]
        assert isinstance(head, Commit)
        squashed = Commit()
        squashed.tree = head.tree
        squashed.author = squashed.committer = b"exec-assistant tests <tests@localhost>"
        squashed.author_time = squashed.commit_time = int(time.time())
        squashed.author_timezone = squashed.commit_timezone = 0
        squashed.message = b"History compacted by the test suite.\n"
        repo.object_store.add_object(squashed)
        repo.refs[head_ref] = squashed.id  # moves the branch HEAD points at
        keep = {squashed.id}
        trees = [head.tree]
        while trees:
            tree_id = trees.pop()
            keep.add(tree_id)
            tree = repo.object_store[tree_id]
            assert isinstance(tree, Tree)
            for _name, mode, sha in tree.iteritems():
                if mode & 0o170000 == 0o040000:
                    trees.append(sha)
                else:
                    keep.add(sha)
        objects = Path(repo.controldir()) / "objects"
        for loose in objects.glob("[0-9a-f][0-9a-f]/*"):
            if (loose.parent.name + loose.name).encode() not in keep:
                loose.unlink()
        assert all(isinstance(repo.object_store[k], Commit | Tree | Blob) for k in keep)


def start_xandikos(folder: Path) -> XandikosServer:
    """A started server (the caller stops it); for tests that need one of their own."""
    return XandikosServer(folder).start()


@pytest.fixture
def xandikos(tmp_path: Path) -> Iterator[XandikosServer]:
    with XandikosServer(tmp_path / "xandikos") as server:
        yield server
