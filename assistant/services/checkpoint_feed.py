"""An ICS feed of a pair's checkpoints, for calendars we cannot write to.

The URL carries a signed token (purpose ``ics-feed``, the pair id) instead of a login,
so a calendar app can subscribe to it; rotating ``web.secret_key`` revokes every feed.
Each checkpoint keeps the UID of its calendar event, so subscribers see updates, not
duplicates, when a line moves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import icalendar
from sqlalchemy import select

from assistant.domain.delegation import CheckpointKind, checkpoint_text
from assistant.domain.model import OWN_EVENT_PROPERTY
from assistant.domain.signing import sign, verify
from assistant.services.feedback import base_url, brief_of, feedback_link, secret_keys
from assistant.services.pairs import find_pair
from assistant.store.tables import Checkpoint, DelegatedTask, Pair

if TYPE_CHECKING:
    from assistant.services.deps import Deps

PURPOSE = "ics-feed"
NEVER = datetime(2100, 1, 1, tzinfo=UTC)
SHOWN = ("planned", "written", "pinned")


def feed_url(deps: Deps, pair_ref: str | int | None) -> str:
    with deps.uow.read() as session:
        pair_id = find_pair(session, pair_ref).id
    token = sign(secret_keys(deps.settings), PURPOSE, {"pair": pair_id}, NEVER)
    return f"{base_url(deps.settings)}/ics/{token}.ics"


def pair_of_token(deps: Deps, token: str) -> int:
    """Raises ``assistant.domain.signing.TokenError`` for a forged or foreign token."""
    return int(verify(secret_keys(deps.settings), PURPOSE, token, deps.now())["pair"])


def feed(deps: Deps, pair_id: int) -> str:
    """The VCALENDAR of the pair's placed checkpoints of open tasks."""
    cal = icalendar.Calendar()
    cal.add("PRODID", "-//exec-assistant//checkpoints//EN")
    cal.add("VERSION", "2.0")
    with deps.uow.read() as session:
        pair = session.get(Pair, pair_id)
        if pair is None:
            raise LookupError(f"no pair {pair_id}")
        cal.add("X-WR-CALNAME", f"Delegation checkpoints ({pair.name})")
        cal.add("X-WR-TIMEZONE", pair.timezone)
        rows = session.execute(
            select(Checkpoint, DelegatedTask)
            .join(DelegatedTask, DelegatedTask.id == Checkpoint.task_id)
            .where(
                DelegatedTask.pair_id == pair_id,
                DelegatedTask.state.not_in(("cancelled",)),
                Checkpoint.state.in_(SHOWN),
                Checkpoint.start_at.is_not(None),
            )
            .order_by(Checkpoint.start_at)
        ).all()
        for cp, task in rows:
            assert cp.start_at is not None
            assert cp.end_at is not None
            link = feedback_link(deps.settings, task.id, task.deadline, cp.kind, pair.manager_email)
            summary, description = checkpoint_text(
                CheckpointKind(cp.kind), brief_of(task, pair), link, pair.locale
            )
            event = icalendar.Event()
            event.add("UID", cp.event_uid)
            event.add("DTSTAMP", task.updated_at.astimezone(UTC).replace(microsecond=0))
            event.add("DTSTART", cp.start_at.astimezone(UTC).replace(microsecond=0))
            event.add("DTEND", cp.end_at.astimezone(UTC).replace(microsecond=0))
            event.add("SUMMARY", summary)
            event.add("DESCRIPTION", description)
            event.add("CATEGORIES", ["Delegation"])
            event.add("TRANSP", "OPAQUE")
            event[OWN_EVENT_PROPERTY] = f"{task.id}:{cp.kind}"
            cal.add_component(event)
    return str(cal.to_ical().decode("utf-8"))
