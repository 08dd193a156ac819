"""``deps_for``: the composition root's ``Service`` around a test's unit of work.

Use cases take ``deps: Deps`` (``assistant.services.deps``); a test that holds only a
unit of work (the ``uow`` fixture) and a time passes ``deps_for(uow, NOW)``: the real
``Service`` on that unit of work, with default settings, no channels and its clock
stopped at ``now`` (the current time when none is given).
"""

from __future__ import annotations

from datetime import datetime

from assistant.bootstrap import Service, system_clock
from assistant.store.db import UnitOfWork
from config.settings import Settings


def deps_for(uow: UnitOfWork, now: datetime | None = None) -> Service:
    clock = system_clock if now is None else (lambda: now)
    return Service(settings=Settings(), engine=uow.engine, uow=uow, clock=clock, channels={})
