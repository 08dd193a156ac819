"""One real CalDAV server of each kind per test process, started on first use.

Starting Radicale (0.2 s) and Xandikos (0.5 s) for each of the contract's scenarios
would cost more than the scenarios themselves; instead every scenario gets a fresh
calendar collection on a server shared by the process (``fresh_calendar``), which
isolates it just as well: sync tokens, history and faults are per collection or per
proxy. The servers are stopped, and their folders removed, when the process exits.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from itertools import count
from pathlib import Path

from assistant.entrypoints.embedded import EmbeddedRadicale
from tests.support.radicale import start_radicale
from tests.support.xandikos import XandikosServer, start_xandikos

_radicale: EmbeddedRadicale | None = None
_xandikos: XandikosServer | None = None
_names = count(1)


def _folder(kind: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"contract-{kind}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def radicale() -> EmbeddedRadicale:
    global _radicale
    if _radicale is None or not _radicale.running:
        _radicale = start_radicale(_folder("radicale"))
        atexit.register(_radicale.stop)  # runs before the folder is removed (LIFO)
    return _radicale


def xandikos() -> XandikosServer:
    global _xandikos
    if _xandikos is None or not _xandikos.running:
        _xandikos = start_xandikos(_folder("xandikos"))
        atexit.register(_xandikos.stop)
    return _xandikos


def fresh_name() -> str:
    """A calendar name not used before in this process."""
    return f"work{next(_names)}"
