"""Nudges: the manager is reminded before the reply SLA to the assistant is broken.

For each message from the assistant to the manager still open (no answer from the
manager in its thread), measured in the manager's working time:

- at ``nudge_share`` of the SLA (default 80%) the manager gets one reminder;
- at the SLA, a second reminder, and the assistant is told it is overdue.

Each stage goes at most once per message and recipient: the outbox key is made of the
pair, the message and the stage, so a retried job or a restart sends nothing twice.
Outside working hours nothing is sent unless a priority rule marks the message high
(urgent); the job runs again at the next working instant or the next stage, whichever
comes first. Time is injected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import jinja2
from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.domain import timefmt
from assistant.domain.latency import LatencyRecord
from assistant.domain.notify import template_env
from assistant.domain.priorities import Level, rank_message
from assistant.domain.text import one_line
from assistant.services import outbox
from assistant.services.assistant_messages import notify_channels
from assistant.services.hours import pair_hours
from assistant.services.priorities import load_rules
from assistant.services.reply_index import fed_index
from assistant.store.tables import Message, OutboxEntry, Pair

if TYPE_CHECKING:
    from assistant.services.deps import Deps

SUBJECTS = {
    "en": {
        ("manager", "reminder"): "Waiting for your answer: {subject}",
        ("manager", "breach"): "Overdue for your answer: {subject}",
        ("assistant", "breach"): "Not answered within {sla} min: {subject}",
    },
    "ru": {
        ("manager", "reminder"): "Ждёт вашего ответа: {subject}",
        ("manager", "breach"): "Ответ просрочен: {subject}",
        ("assistant", "breach"): "Нет ответа за {sla} мин: {subject}",
    },
}


@dataclass(frozen=True)
class NudgeReport:
    pair_id: int
    queued: list[str] = field(default_factory=list)  # outbox keys written now
    outbox_ids: list[int] = field(default_factory=list)
    held: int = 0  # due, but outside working hours and not urgent
    next_due: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pair_id": self.pair_id,
            "queued": self.queued,
            "outbox_ids": self.outbox_ids,
            "held": self.held,
            "next_due": self.next_due.isoformat() if self.next_due else None,
        }


def nudge(deps: Deps, pair_id: int) -> NudgeReport:
    """Queue the reminders due at ``deps.now()`` for the pair's open messages."""
    now, settings = deps.now(), deps.settings.latency
    since = now - timedelta(days=settings.lookback_days)
    queued: list[str] = []
    outbox_ids: list[int] = []
    held = 0
    next_due: datetime | None = None
    with deps.uow.begin() as session:
        pair = session.get(Pair, pair_id)
        if pair is None:
            raise LookupError(f"no pair with id {pair_id}")
        hours = pair_hours(pair, since.year, now.year + 1)
        with fed_index(session, deps.uow, pair, now) as kept:
            # The assistant's reply to the manager's own request answers it; the manager is
            # not nagged to answer an answer (it still counts in the latency figures).
            waiting = [
                r
                for r in kept.waiting_for_manager(since, now, hours.working_minutes)
                if not kept.answers_manager(r.message_id, since)
            ]
        if not waiting:
            return NudgeReport(pair_id)
        rules = load_rules(session, pair_id)
        sla = float(pair.sla_minutes)
        working_now = hours.is_working(now)
        due: list[tuple[LatencyRecord, float, list[str]]] = []
        for r in waiting:
            waited = r.waiting_working_minutes or 0.0
            # The highest stage reached: a run that comes late (a stopped worker) sends the
            # breach alone rather than a stale "80%" reminder with it.
            stages = ["breach"] if waited >= sla else (
                ["reminder"] if waited >= settings.nudge_share * sla else []
            )  # fmt: skip
            upcoming = [
                hours.instant_after(r.sent_at, share * sla)
                for share in (settings.nudge_share, 1.0)
                if waited < share * sla
            ]
            if upcoming:
                next_due = min([next_due or upcoming[0], *upcoming])
            if stages:
                due.append((r, waited, stages))
        # A reminder queued before is not written (nor rendered) again: the keys already in
        # the outbox are looked up at once, so an open message costs no more on each run.
        channels = notify_channels(pair)
        keys = {
            r.message_id: [k for stage in stages for k, *_ in _targets(pair, r, stage, channels)]
            for r, _, stages in due
        }
        sent = _existing(session, [k for ks in keys.values() for k in ks])
        if working_now:  # nothing is held: a message whose reminders are all out is done
            due = [d for d in due if not sent.issuperset(keys[d[0].message_id])]
        people = _people(session, pair_id, [r.message_id for r, _, _ in due])
        for r, waited, stages in due:
            urgent = rank_message(r.subject, people[r.message_id], rules, pair.locale)
            if not working_now and urgent.level is not Level.HIGH:
                held += 1
                nxt = hours.next_working_instant(now)
                next_due = min(next_due or nxt, nxt)
                continue
            for stage in stages:
                _queue(session, pair, r, stage, waited, sla, urgent.reasons, now, queued,
                       outbox_ids, channels, sent)  # fmt: skip
    return NudgeReport(pair_id, queued, outbox_ids, held, next_due)


def _targets(
    pair: Pair, r: LatencyRecord, stage: str, channels: list[str]
) -> list[tuple[str, str, str, str]]:
    """(outbox key, audience, recipient, channel) of each reminder of ``stage`` for ``r``."""
    digest = hashlib.sha256(r.message_id.encode()).hexdigest()[:16]
    targets = [("manager", pair.manager_email, ["smtp"])]
    if stage == "breach":
        targets.append(("assistant", pair.assistant_email, channels))
    return [
        (f"nudge:{pair.id}:{digest}:{stage}:{audience}:{channel}", audience, recipient, channel)
        for audience, recipient, chans in targets
        for channel in chans
    ]


def _existing(session: Session, keys: list[str]) -> set[str]:
    """Which of ``keys`` the outbox holds."""
    found: set[str] = set()
    for i in range(0, len(keys), 500):
        found.update(
            session.scalars(
                select(OutboxEntry.idempotency_key).where(
                    OutboxEntry.idempotency_key.in_(keys[i : i + 500])
                )
            )
        )
    return found


def _people(session: Session, pair_id: int, message_ids: list[str]) -> dict[str, list[str]]:
    """Sender, To and Cc of each of the pair's messages named (for the priority rules)."""
    out: dict[str, list[str]] = {}
    for i in range(0, len(message_ids), 500):
        rows = session.execute(
            select(Message.message_id, Message.from_addr, Message.to_addrs, Message.cc_addrs).where(
                Message.pair_id == pair_id, Message.message_id.in_(message_ids[i : i + 500])
            )
        )
        for mid, sender, to, cc in rows:
            out[mid] = [sender, *to, *cc]
    return out


def _queue(
    session: Any,
    pair: Pair,
    r: LatencyRecord,
    stage: str,
    waited: float,
    sla: float,
    urgent: tuple[str, ...],
    now: datetime,
    queued: list[str],
    outbox_ids: list[int],
    channels: list[str] | None = None,
    sent_keys: AbstractSet[str] = frozenset(),
) -> None:
    """Queue ``stage``'s reminders for ``r``; none whose key is in ``sent_keys`` (they are in
    the outbox already). ``channels``: the pair's (``notify_channels``), when known."""
    chans = notify_channels(pair) if channels is None else channels
    targets = [t for t in _targets(pair, r, stage, chans) if t[0] not in sent_keys]
    if not targets:
        return
    lg = timefmt.lang(pair.locale)
    sent = r.sent_at.astimezone(ZoneInfo(pair.timezone))
    context = {
        "stage": stage,
        "subject": one_line(r.subject) or "(no subject)",
        "sent": f"{timefmt.day(sent.date(), lg)} {sent:%H:%M}",
        "waited": round(waited),
        "sla": round(sla),
        "manager": pair.manager_name,
        "assistant": pair.assistant_name,
        "urgent": "; ".join(urgent),
    }
    template = _template(lg)
    texts: dict[str, tuple[str, str]] = {}  # audience -> (text, subject), rendered once
    for key, audience, recipient, channel in targets:
        if audience not in texts:
            texts[audience] = (
                template.render(context | {"audience": audience}),
                SUBJECTS[lg][(audience, stage)].format(
                    subject=context["subject"], sla=context["sla"]
                ),
            )
        text, subject = texts[audience]
        entry = outbox.enqueue(
            session,
            key=key,
            channel=channel,
            recipient=recipient,
            subject=subject,
            body_text=text,
            payload={"kind": "nudge", "stage": stage, "audience": audience,
                     "message_id": r.message_id, "waited_working_minutes": round(waited, 1)},
            pair_id=pair.id,
            now=now,
        )  # fmt: skip
        if entry is not None:
            queued.append(key)
            outbox_ids.append(entry.id)


def _template(lg: str) -> jinja2.Template:
    return template_env().get_template(f"nudge/nudge.{lg}.txt.j2")
