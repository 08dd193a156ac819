"""Polling a calendar again while its pair's changes settle.

A pair's changes go out once none has come for the coalescing window (a quiet period,
``domain.quiet_period``). A polled calendar (CalDAV, an ICS feed) shows a change only
when it is polled: at the default 30 s polling and 20 s window, a burst's end or an undo
would come with the next round, after the first state went out. So a polled calendar
whose pair has changes waiting for quiet is synced again every ``sync.repoll_seconds``
until the quiet period ends; the last re-poll falls on its end, and its sync dispatches
what is due. A calendar that pushes (EWS, Graph and Google with a public URL) reports
the change itself and is not re-polled.

This module decides; the job (``jobs.tasks.follow``) schedules the sync, claimed once
per account and instant (re-polls fall on a grid, so two syncs that both plan one plan
the same). The dispatch job planned for the same end is the safety net for a re-poll
that fails or is lost; when it runs just before the last re-poll, a change made in the
last re-poll step (after a whole window of quiet) goes in a message of its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from assistant.domain import quiet_period
from assistant.services.notifications import DispatchReport
from assistant.services.push import calendar_pushes

if TYPE_CHECKING:
    from assistant.services.deps import Deps


def repolled(deps: Deps) -> bool:
    """Whether polled calendars are polled again while their changes settle."""
    return deps.settings.sync.repoll_seconds > 0


def repoll_at(deps: Deps, provider: str, dispatched: DispatchReport | None) -> datetime | None:
    """When to sync a calendar of ``provider`` again, after a sync whose pair's dispatch
    reported ``dispatched`` (None: nothing dispatched); None: not again before the next
    polling round (nothing settles, the calendar pushes, or re-polling is off)."""
    if dispatched is None or dispatched.settles_at is None or not repolled(deps):
        return None
    if calendar_pushes(deps.settings, provider):
        return None
    step = timedelta(seconds=deps.settings.sync.repoll_seconds)
    return quiet_period.repoll_at(deps.now(), dispatched.settles_at, step)
