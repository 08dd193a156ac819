"""The manager's priority rules: stored per pair, listed for the assistant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.domain.priorities import Rule, make_rule
from assistant.services.pairs import NotFoundError, find_pair
from assistant.store.tables import PriorityRule

if TYPE_CHECKING:
    from assistant.services.deps import Deps


def load_rules(session: Session, pair_id: int) -> list[Rule]:
    rows = session.scalars(
        select(PriorityRule).where(PriorityRule.pair_id == pair_id).order_by(PriorityRule.id)
    )
    return [make_rule(r.kind, r.pattern, r.level, r.note) for r in rows]


def add_rule(
    deps: Deps,
    *,
    pair: str | int | None,
    kind: str,
    pattern: str,
    level: str,
    note: str = "",
) -> int:
    rule = make_rule(kind, pattern, level, note)  # validates before anything is stored
    with deps.uow.begin() as session:
        p = find_pair(session, pair)
        existing = session.scalars(
            select(PriorityRule).where(
                PriorityRule.pair_id == p.id,
                PriorityRule.kind == rule.kind,
                PriorityRule.pattern == rule.pattern,
            )
        ).first()
        if existing is not None:  # the same rule again: its level and note change
            existing.level, existing.note = rule.level.label, note
            return existing.id
        row = PriorityRule(
            pair_id=p.id, kind=rule.kind, pattern=rule.pattern, level=rule.level.label,
            note=note, created_at=deps.now(),
        )  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def remove_rule(deps: Deps, rule_id: int, pair: str | int | None = None) -> None:
    with deps.uow.begin() as session:
        row = session.get(PriorityRule, rule_id)
        if row is None or (pair is not None and row.pair_id != find_pair(session, pair).id):
            raise NotFoundError(f"no priority rule {rule_id}")
        session.delete(row)


@dataclass(frozen=True, slots=True)
class RuleView:
    """A stored priority rule and how it reads to the assistant (``text``)."""

    id: int
    kind: str
    pattern: str
    level: str  # high | normal | low
    note: str
    text: str


_LEVEL_ORDER = {"high": 0, "normal": 1, "low": 2}


def list_rules(deps: Deps, pair: str | int | None) -> list[RuleView]:
    """The pair's rules, highest level first."""
    with deps.uow.read() as session:
        p = find_pair(session, pair)
        rows = session.scalars(
            select(PriorityRule).where(PriorityRule.pair_id == p.id).order_by(PriorityRule.id)
        )
        out = [
            RuleView(id=r.id, kind=r.kind, pattern=r.pattern, level=r.level, note=r.note,
                     text=make_rule(r.kind, r.pattern, r.level, r.note).describe())
            for r in rows
        ]  # fmt: skip
        out.sort(key=lambda v: (_LEVEL_ORDER[v.level], v.kind, v.pattern))
        return out
