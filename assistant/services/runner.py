"""Running the sync of a pair's accounts now, in this process (``assistant sync``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from assistant.services import outbox
from assistant.services.pairs import find_pair
from assistant.services.sync import SyncPolicy, record_failure, sync_calendar
from assistant.store.tables import Account
from connectors.base import ConnectorError, ParseLimits

if TYPE_CHECKING:
    from assistant.services.deps import Deps


def policy_of(svc: Deps) -> SyncPolicy:
    from datetime import timedelta

    s = svc.settings.sync
    return SyncPolicy(
        window_past=timedelta(days=s.window_past_days),
        window_future=timedelta(days=s.window_future_days),
        horizon=timedelta(days=s.horizon_days),
    )


def sync_now(
    svc: Deps, pair: str | int | None = None, account_id: int | None = None, send: bool = True
) -> list[dict[str, Any]]:
    from assistant.services.accounts import token_keeper
    from assistant.services.mail import import_mail
    from connectors.netguard import NetPolicy
    from connectors.registry import open_calendar, open_mailbox

    with svc.uow.read() as session:
        stmt = select(Account).order_by(Account.id)
        if account_id is not None:
            stmt = stmt.where(Account.id == account_id)
        else:
            stmt = stmt.where(Account.pair_id == find_pair(session, pair).id)
        loaded = list(session.scalars(stmt))
        accounts = [(a.id, a.name, a.kind, a.provider, dict(a.settings)) for a in loaded]
        touched = {(a.pair_id, a.kind) for a in loaded}
    if not accounts:
        raise LookupError("no accounts to sync: add one with `assistant account add`")
    results: list[dict[str, Any]] = []
    timeout = svc.settings.sync.http_timeout_seconds
    net = NetPolicy.from_settings(svc.settings.network)
    for aid, name, kind, provider, conf in accounts:
        row: dict[str, Any] = {"account": f"{aid} {name}", "kind": kind}
        try:
            if kind == "calendar":
                keep, limits = token_keeper(svc, aid), ParseLimits.of(svc.settings.limits)
                source = open_calendar(
                    provider, conf, timeout, keep_token=keep, limits=limits, policy=net
                )
                report = sync_calendar(svc.uow, aid, source, svc.now(), policy_of(svc))
                row |= {
                    "full": report.full,
                    "unchanged": report.unchanged,
                    "events": report.events,
                    "changes": [c.kind.value for c in report.changes],
                    "skipped": list(report.skipped),
                }
                done = f"{len(report.changes)} change(s)" if report.changes else "no change"
                if report.skipped:
                    done += f", {len(report.skipped)} unreadable item(s)"
                row["summary"] = done
            else:
                keep, limits = token_keeper(svc, aid), ParseLimits.of(svc.settings.limits)
                mailbox = open_mailbox(
                    provider, conf, keep_token=keep, limits=limits, policy=net
                )
                imported = import_mail(svc, aid, mailbox)
                row |= imported.to_dict()
                row["summary"] = f"{imported.new} new message(s)"
        except ConnectorError as exc:
            # Opening the connector can fail too (a stored secret that cannot be read):
            # the account shows it like any failed sync. Recording twice changes nothing.
            record_failure(svc.uow, aid, exc, svc.now())
            row |= {"error": str(exc), "summary": f"error: {exc}"}
        results.append(row)
    from assistant.services.notifications import dispatch, pairs_with_pending
    from assistant.services.nudges import nudge

    for pair_id in sorted({pid for pid, kind in touched if kind == "mail"}):
        n = nudge(svc, pair_id)
        if n.queued:
            summary = f"{len(n.queued)} reminder(s) queued"
            results.append({"account": f"pair {pair_id}", "kind": "nudge", "summary": summary})
    # Run by hand: what was found is put into messages now, without the coalescing wait.
    for pair_id in pairs_with_pending(svc.uow):
        d = dispatch(svc.uow, pair_id, svc.now(), svc.settings.notify, force=True)
        if d.sent or d.undone:
            summary = f"{d.sent} change(s) in {len(d.outbox_ids)} message(s)"
            results.append({"account": f"pair {pair_id}", "kind": "notify", "summary": summary})
    if send:
        report_ = outbox.drain(svc.uow, svc.channels, svc.now, svc.settings.outbox)
        results.append({"account": "outbox", "kind": "send", "summary": _sent(report_.to_dict())})
    return results


def _sent(d: dict[str, Any]) -> str:
    return (
        ", ".join(f"{k}: {v}" for k, v in d.items() if v not in (None, 0, [], "")) or "nothing due"
    )
