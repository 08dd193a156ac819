"""What a use case may use from the process: the one signature convention of the services.

Every use case takes ``deps: Deps`` first. The composition root's ``bootstrap.Service``
satisfies it; tests may pass any object that does. A use case never reaches for the
composition root, the engine or an adapter: what it stores goes through ``deps.uow``
(the store layer, ``assistant.store``), what it sends through ``deps.channels``, and the
time is ``deps.now()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from assistant.services.outbox import Channel
    from assistant.store.db import UnitOfWork
    from config.settings import Settings


class Deps(Protocol):
    """The settings, the unit of work, the delivery channels and the clock."""

    @property
    def settings(self) -> Settings: ...

    @property
    def uow(self) -> UnitOfWork: ...

    @property
    def channels(self) -> Mapping[str, Channel]: ...

    def now(self) -> datetime: ...
