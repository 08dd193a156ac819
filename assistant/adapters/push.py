"""Push without a public endpoint: threads that wait on the provider and queue a sync.

Exchange streams calendar notifications over a connection we open (EWS streaming); IMAP
servers tell a client in IDLE that mail arrived. One thread per such account waits and,
when something changed, calls ``on_change(account_id)`` (``assistant run`` queues the
account's sync job). The sync itself is the usual incremental one, so a lost or doubled
signal costs at most one extra sync; polling stays on as the safety net.

Runs in the one process that runs the scheduler. Stopping sets an event every waiter
watches; EWS ends its blocked read at once, IMAP within the IDLE timeout it was given.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from assistant.store.tables import Account
from connectors.base import ConnectorError

if TYPE_CHECKING:
    from assistant.services.deps import Deps

log = logging.getLogger(__name__)

PUSH_PROVIDERS = ("ews", "imap")
IDLE_SECONDS = 60.0


@dataclass
class PushSupervisor:
    svc: Deps
    on_change: Callable[[int], None]
    idle_seconds: float = IDLE_SECONDS
    backoff_max: float = 60.0
    threads: dict[int, threading.Thread] = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)

    def start(self) -> list[int]:
        """Start a waiter for every push-capable account; their ids."""
        with self.svc.uow.read() as session:
            rows = [
                (a.id, a.provider, dict(a.settings))
                for a in session.scalars(
                    select(Account).where(
                        Account.provider.in_(PUSH_PROVIDERS), Account.disabled.is_(False)
                    )
                )
            ]
        for account_id, provider, conf in rows:
            target = self._ews if provider == "ews" else self._imap
            thread = threading.Thread(
                target=self._guarded, args=(target, account_id, conf),
                name=f"push-{provider}-{account_id}", daemon=True,
            )  # fmt: skip
            self.threads[account_id] = thread
            thread.start()
        return sorted(self.threads)

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        for thread in self.threads.values():
            thread.join(timeout)
        self.threads.clear()

    # -------------------------------------------------------------------- waiters

    def _guarded(self, target: Callable[[int, dict[str, Any]], None], account_id: int,
                 conf: dict[str, Any]) -> None:  # fmt: skip
        delay = 1.0
        while not self.stop_event.is_set():
            try:
                target(account_id, conf)
                delay = 1.0
            except ConnectorError as exc:
                log.warning("push for account %s: %s; again in %.0fs", account_id, exc, delay)
            except Exception:
                log.exception("push for account %s failed; again in %.0fs", account_id, delay)
            if self.stop_event.wait(delay):
                return
            delay = min(delay * 2, self.backoff_max)

    def _signal(self, account_id: int) -> None:
        try:
            self.on_change(account_id)
        except Exception:  # a queue hiccup must not end the watcher; polling catches up
            log.exception("could not queue a sync of account %s", account_id)

    def _ews(self, account_id: int, conf: dict[str, Any]) -> None:
        from connectors.ews.account import ews_settings
        from connectors.ews.push import EwsStreamingWatcher
        from connectors.settings import secret

        watcher = EwsStreamingWatcher(
            ews_settings(conf, secret), timeout=self.svc.settings.sync.http_timeout_seconds
        )
        watcher.watch(lambda: self._signal(account_id), self.stop_event)

    def _imap(self, account_id: int, conf: dict[str, Any]) -> None:
        from connectors.imap.mailbox import ImapMailbox
        from connectors.netguard import NetPolicy
        from connectors.registry import open_mailbox

        settings = self.svc.settings
        policy = NetPolicy.from_settings(settings.network)
        mailbox = open_mailbox("imap", conf, settings.sync.http_timeout_seconds, policy=policy)
        assert isinstance(mailbox, ImapMailbox)
        try:
            with self.svc.uow.read() as session:
                account = session.get(Account, account_id)
                token = account.sync_token if account is not None else None
            while not self.stop_event.is_set():
                if mailbox.idle(self.idle_seconds, token):
                    self._signal(account_id)
                    # The sync moves the token on; wait for it before idling again.
                    if self.stop_event.wait(1.0):
                        return
                    with self.svc.uow.read() as session:
                        account = session.get(Account, account_id)
                        token = account.sync_token if account is not None else None
        finally:
            mailbox.close()
