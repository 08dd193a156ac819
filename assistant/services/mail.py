"""Mail import and reply latency: stored messages → threads → latency records → report.

The pair's records come from its ``LatencyIndex`` (``assistant.services.reply_index``), fed
only the messages stored since the last call; an exported mailbox is measured in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from assistant.domain.latency import Direction, classifier
from assistant.domain.model import MessageData
from assistant.services.latency_report import (
    Figures,
    LatencyReport,
    MessageLatency,
    _report,
    latency_of_archive,
    report,
)
from assistant.services.reply_index import (
    PairLatency,
    addresses,
    cached_index,
    pair_latency,
    stored,
    stored_keys,
    to_message,
)
from assistant.services.sync import rowcount, skipped_status
from assistant.store.tables import Account, Message
from connectors.base import MailSource, TokenExpired

if TYPE_CHECKING:
    from assistant.services.deps import Deps

__all__ = [  # the index's and the reports' names, as callers found them here before
    "Figures",
    "LatencyReport",
    "MessageLatency",
    "PairLatency",
    "addresses",
    "cached_index",
    "latency_of_archive",
    "pair_latency",
    "report",
    "to_message",
]


# A mailbox sync's end, built once (a Core statement: most polls run nothing else).
_ACCOUNTS = cast(Table, Account.__table__)
_IMPORTED = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
    .values(sync_token=bindparam("new_token"), state="ok", last_sync_at=bindparam("now"),
            last_error=bindparam("new_error"))
)  # fmt: skip


class Unread:
    """The type of ``UNREAD``: a change token the caller did not read."""


UNREAD = Unread()


@dataclass(frozen=True)
class MailImport:
    """What one import stored: ``new`` messages of ``seen``, and what could not be read."""

    new: int
    seen: int
    skipped: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"new": self.new, "seen": self.seen, "skipped": list(self.skipped)}


def import_mail(
    deps: Deps, account_id: int, source: MailSource, *, token: str | Unread | None = UNREAD
) -> MailImport:
    """Store the messages the mailbox has that we have not seen; advance its token.

    ``token``: the account's change token as the caller just read it (default: read here).
    """
    if isinstance(token, Unread):
        with deps.uow.read() as session:
            account = session.get(Account, account_id)
            if account is None:
                raise LookupError(f"no account with id {account_id}")
            token = account.sync_token
    try:
        delta = source.changes(token)
    except TokenExpired:
        delta = source.changes(None)
    now = deps.now()
    with deps.uow.begin() as session:
        inserted: dict[int, dict[str, Any]] = {}
        pair_id: int | None = None
        if delta.messages:  # the pair (its people's addresses) only when there is mail
            account = session.get(Account, account_id)
            if account is None:
                raise LookupError(f"no account with id {account_id}")
            pair = account.pair
            direction = classifier(*addresses(pair))
            pair_id = pair.id
            rows = [_row(pair_id, account_id, m, direction(m)) for m in delta.messages]
            inserted = _insert_new(session, rows)
        # One statement (no mail: the only one): the token moves on, the account is fine.
        done = session.connection().execute(_IMPORTED, {
            "account_id": account_id, "new_token": delta.token, "now": now,
            "new_error": skipped_status(delta.skipped),  # e.g. a mail over a limit
        })  # fmt: skip
        if not rowcount(done):
            raise LookupError(f"no account with id {account_id}")
    # Committed: the pair's index (if this process keeps one) takes these rows as they were
    # stored, rather than reading them back (``reply_index.stored``).
    if pair_id is not None:
        stored(deps.uow, pair_id, inserted)
    return MailImport(new=len(inserted), seen=len(delta.messages), skipped=list(delta.skipped))


def _row(pair_id: int, account_id: int, m: MessageData, direction: Direction) -> dict[str, Any]:
    return {
        "pair_id": pair_id,
        "account_id": account_id,
        "message_id": m.message_id[:998],
        "thread_key": m.thread_id,
        "in_reply_to": m.in_reply_to[:998],
        "references": list(m.references),
        "subject": m.subject,
        "from_addr": m.from_addr[:320],
        "to_addrs": list(m.to),
        "cc_addrs": list(m.cc),
        "sent_at": m.sent_at,
        "direction": direction.value,
        "folder": m.folder,
        # Our own notifications, when sent from the manager's mailbox, are machine mail too.
        "auto_reply": m.auto_reply or m.message_id.strip("<>").endswith("@exec-assistant"),
        "text_keys": stored_keys(m.extra),  # copies and quoted replies, where the body was read
    }


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Insert rows whose (pair, Message-ID) is new; a copy in another folder counts once.
    The rows inserted, by their new id."""
    if not rows:
        return {}
    unique = list({(r["pair_id"], r["message_id"]): r for r in rows}.values())
    bind = session.get_bind()
    insert = postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert
    # One statement, compiled once and sent in batches (SQLAlchemy's "insertmanyvalues");
    # rowcount is -1 for such inserts on some drivers: count the ids that came back. A row
    # that conflicts returns nothing: the Message-ID (as stored: ``_stored_text``) says which
    # row each id is, the first of a batch winning as in the table.
    stmt = (
        insert(Message)
        .on_conflict_do_nothing(index_elements=["pair_id", "message_id"])
        .returning(Message.id, Message.message_id)
    )
    by_id: dict[str, dict[str, Any]] = {}
    for r in unique:
        by_id.setdefault(_stored_text(r["message_id"]), r)
    return {row_id: by_id[mid] for row_id, mid in session.connection().execute(stmt, unique)}


def _stored_text(value: str) -> str:
    """A string as the store keeps it (``assistant.store.db``: NUL becomes a space)."""
    return value.replace("\x00", " ") if "\x00" in value else value


def latency_of_pair(
    deps: Deps, pair_ref: str | int | None, since: datetime | None
) -> LatencyReport:
    """The pair's latency report, from its ``LatencyIndex`` brought up to date."""
    kept = pair_latency(deps, pair_ref)
    return _report(kept.records, kept.sla_minutes, since, "working", kept.zone)
