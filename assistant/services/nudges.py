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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from sqlalchemy import select

from assistant.domain import timefmt
from assistant.domain.latency import Direction, LatencyRecord, reply_latencies
from assistant.domain.notify import template_env
from assistant.domain.priorities import Level, rank_message
from assistant.domain.text import one_line
from assistant.services import outbox
from assistant.services.assistant_messages import notify_channels
from assistant.services.hours import pair_hours
from assistant.services.mail import addresses, to_message
from assistant.services.priorities import load_rules
from assistant.store.db import UnitOfWork
from assistant.store.tables import Message, Pair
from config.settings import LatencySettings

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


@dataclass
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


def nudge(uow: UnitOfWork, pair_id: int, now: datetime, settings: LatencySettings) -> NudgeReport:
    report = NudgeReport(pair_id)
    since = now - timedelta(days=settings.lookback_days)
    with uow.begin() as session:
        pair = session.get(Pair, pair_id)
        if pair is None:
            raise LookupError(f"no pair with id {pair_id}")
        rows = session.scalars(
            select(Message)
            .where(Message.pair_id == pair_id, Message.sent_at >= since)
            .order_by(Message.sent_at)
        )
        messages = [to_message(m) for m in rows]
        if not messages:
            return report
        by_id = {m.message_id: m for m in messages}
        managers, assistants = addresses(pair)
        hours = pair_hours(pair, since.year, now.year + 1)
        rules = load_rules(session, pair_id)
        records = reply_latencies(
            messages, managers, assistants, now, working_minutes=hours.working_minutes
        )
        sla = float(pair.sla_minutes)
        working_now = hours.is_working(now)
        # The assistant's reply to the manager's own request answers it; the manager is not
        # nagged to answer an answer (it still counts in the latency figures).
        answers = {
            r.reply_message_id
            for r in records
            if r.direction is Direction.MANAGER_TO_ASSISTANT and r.answered
        }
        for r in records:
            if r.direction is not Direction.ASSISTANT_TO_MANAGER or r.answered:
                continue
            if r.message_id in answers:
                continue
            waited = r.waiting_working_minutes or 0.0
            # The highest stage reached: a run that comes late (a stopped worker) sends the
            # breach alone rather than a stale "80%" reminder with it.
            stages = ["breach"] if waited >= sla else (
                ["reminder"] if waited >= settings.nudge_share * sla else []
            )
            upcoming = [
                hours.instant_after(r.sent_at, share * sla)
                for share in (settings.nudge_share, 1.0)
                if waited < share * sla
            ]
            if upcoming:
                report.next_due = min([report.next_due or upcoming[0], *upcoming])
            if not stages:
                continue
            m = by_id[r.message_id]
            urgent = rank_message(r.subject, [m.from_addr, *m.to, *m.cc], rules, pair.locale)
            if not working_now and urgent.level is not Level.HIGH:
                report.held += 1
                nxt = hours.next_working_instant(now)
                report.next_due = min(report.next_due or nxt, nxt)
                continue
            for stage in stages:
                _queue(session, pair, r, stage, waited, sla, urgent.reasons, now, report)
    return report


def _queue(
    session: Any,
    pair: Pair,
    r: LatencyRecord,
    stage: str,
    waited: float,
    sla: float,
    urgent: tuple[str, ...],
    now: datetime,
    report: NudgeReport,
) -> None:
    lg = timefmt.lang(pair.locale)
    digest = hashlib.sha256(r.message_id.encode()).hexdigest()[:16]
    targets = [("manager", pair.manager_email, ["smtp"])]
    if stage == "breach":
        targets.append(("assistant", pair.assistant_email, notify_channels(pair)))
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
    for audience, recipient, channels in targets:
        text = template.render(context | {"audience": audience})
        subject = SUBJECTS[lg][(audience, stage)].format(
            subject=context["subject"], sla=context["sla"]
        )
        for channel in channels:
            key = f"nudge:{pair.id}:{digest}:{stage}:{audience}:{channel}"
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
                report.queued.append(key)
                report.outbox_ids.append(entry.id)


def _template(lg: str) -> jinja2.Template:
    return template_env().get_template(f"nudge/nudge.{lg}.txt.j2")
