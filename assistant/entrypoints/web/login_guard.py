"""Throttling guesses at the login, counted in the database.

What is counted:

* refused password logins for one email address: 5 are free; the 5th locks the address
  for 15 minutes after it, and every further refusal doubles that (30 minutes, 1 hour,
  ... at most 4 hours) - HTTP 429 with Retry-After and a plain "too many attempts, try
  again in N minutes". Refusals of the last day count; a successful login clears them.
  Steady guessing gets about six tries a day per address instead of hundreds; someone
  locking another's password out leaves them the login link;
* refused logins from one client address (one guesser trying many accounts): 30 in a
  sliding window of 15 minutes, then 429 until the oldest of those is 15 minutes old;
* login links asked for: 3 an hour per email address and 20 an hour per client address;
  beyond that no mail goes out, and the page says what it always says, so it tells
  nobody which addresses exist and nobody can fill a mailbox with links.

An attempt is written *before* it is judged (and before the slow password check), then
judged by the attempts written before it, so requests racing in several web processes
cannot all slip through before the first refusal is written: a password attempt that
must wait is taken back at once, one that fails stays as a refusal, one that succeeds
clears the address's count.

Counts live in ``login_attempts`` (the typed address only as its SHA-256), so they hold
across restarts and across several web processes; rows older than a day are deleted as
new ones are written. Time is passed in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from assistant.store.db import UnitOfWork
from assistant.store.tables import LoginAttempt

KEEP = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    window: timedelta


FREE_REFUSALS = 5  # refused logins for an address before it is locked
FIRST_LOCK = timedelta(minutes=15)  # after the 5th; doubled by each further refusal
MAX_LOCK = timedelta(hours=4)
PASSWORD_PER_CLIENT = Limit(30, timedelta(minutes=15))
LINKS_PER_EMAIL = Limit(3, timedelta(hours=1))
LINKS_PER_CLIENT = Limit(20, timedelta(hours=1))


def _digest(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def lock_after(refusals: int) -> timedelta:
    """How long an address is locked after its ``refusals``-th refusal in a row."""
    if refusals < FREE_REFUSALS:
        return timedelta(0)
    doublings: int = min(refusals - FREE_REFUSALS, 16)
    return min(FIRST_LOCK * (1 << doublings), MAX_LOCK)


@dataclass(frozen=True, slots=True)
class Attempt:
    """A password login counted, before the password is checked."""

    wait: float  # seconds before a password login is heard; 0: heard now
    ids: tuple[int, ...] = ()  # its rows: a refusal unless it succeeds


class LoginGuard:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    # ------------------------------------------------------------------ passwords

    def start_password(self, email: str, client: str, now: datetime) -> Attempt:
        """Count a password login for ``email`` from ``client`` and judge it by the
        refusals before it. ``wait > 0``: not heard (and not counted); else check the
        password, then call ``succeeded`` or nothing (it stays a refusal)."""
        email_key, client_key = f"email:{_digest(email)}", f"ip:{client[:70]}"
        ids = self._record([email_key, client_key], now)
        with self.uow.read() as session:
            refusals = _before(session, email_key, ids, now - KEEP, None)
            wait = 0.0
            if refusals:
                free_at = refusals[0] + lock_after(len(refusals))
                wait = (free_at - now).total_seconds()
            wait = max(wait, _window_wait(session, client_key, PASSWORD_PER_CLIENT, ids, now))
        if wait > 0:
            self._forget(ids)
            return Attempt(wait)
        return Attempt(0.0, tuple(ids))

    def succeeded(self, email: str, attempt: Attempt) -> None:
        """The password was right: the address's refusals go, and this attempt's rows."""
        with self.uow.begin() as session:
            session.execute(
                delete(LoginAttempt).where(LoginAttempt.key == f"email:{_digest(email)}")
            )
            if attempt.ids:
                session.execute(delete(LoginAttempt).where(LoginAttempt.id.in_(attempt.ids)))

    # ---------------------------------------------------------------- login links

    def take_link(self, email: str, client: str, now: datetime) -> bool:
        """Whether a login link may be mailed now; counts the request either way."""
        limits = [(f"link:{_digest(email)}", LINKS_PER_EMAIL),
                  (f"ip-link:{client[:65]}", LINKS_PER_CLIENT)]  # fmt: skip
        ids = self._record([key for key, _ in limits], now)
        with self.uow.read() as session:
            return all(_window_wait(session, key, lim, ids, now) == 0 for key, lim in limits)

    # -------------------------------------------------------------------- storage

    def _record(self, keys: list[str], now: datetime) -> list[int]:
        rows = [LoginAttempt(key=key, at=now) for key in keys]
        with self.uow.begin() as session:
            session.execute(delete(LoginAttempt).where(LoginAttempt.at < now - KEEP))
            session.add_all(rows)
            session.flush()
            return [row.id for row in rows]

    def _forget(self, ids: list[int]) -> None:
        with self.uow.begin() as session:
            session.execute(delete(LoginAttempt).where(LoginAttempt.id.in_(ids)))


def _before(
    session: Session, key: str, mine: list[int], since: datetime, limit: int | None
) -> list[datetime]:
    """When the other attempts under ``key`` since ``since`` were made, newest first."""
    query = (
        select(LoginAttempt.at)
        .where(LoginAttempt.key == key, LoginAttempt.at > since, LoginAttempt.id.not_in(mine))
        .order_by(LoginAttempt.at.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query).all())


def _window_wait(session: Session, key: str, limit: Limit, mine: list[int], now: datetime) -> float:
    """Seconds until fewer than ``limit.count`` other attempts lie in the window."""
    recent = _before(session, key, mine, now - limit.window, limit.count)
    if len(recent) < limit.count:
        return 0.0
    return max(0.0, (recent[-1] + limit.window - now).total_seconds())
