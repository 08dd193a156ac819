"""Throttling guesses at the login, counted in the database.

What is counted, over a sliding window:

* refused logins for one email address: 5 in 15 minutes, then that address cannot log
  in (HTTP 429 with Retry-After, a plain "too many attempts, try again in N minutes")
  until the oldest of those 5 is 15 minutes old; a successful login clears the count;
* refused logins from one client address (one guesser trying many accounts): 30 in 15
  minutes, likewise;
* login links asked for: 3 an hour per email address and 20 an hour per client address;
  beyond that no mail goes out, and the page says what it always says, so it tells
  nobody which addresses exist and nobody can fill a mailbox with links.

Counts live in ``login_attempts`` (the typed address only as its SHA-256), so they hold
across restarts and across several web processes; rows older than a day are deleted as
new ones are written. Time is passed in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from assistant.store.db import UnitOfWork
from assistant.store.tables import LoginAttempt

KEEP = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    window: timedelta


PASSWORD_PER_EMAIL = Limit(5, timedelta(minutes=15))
PASSWORD_PER_CLIENT = Limit(30, timedelta(minutes=15))
LINKS_PER_EMAIL = Limit(3, timedelta(hours=1))
LINKS_PER_CLIENT = Limit(20, timedelta(hours=1))


def _digest(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


class LoginGuard:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    # ------------------------------------------------------------------ passwords

    def password_wait(self, email: str, client: str, now: datetime) -> float:
        """Seconds before a password login for ``email`` from ``client`` is heard (0: now)."""
        return self._wait(
            [
                (f"email:{_digest(email)}", PASSWORD_PER_EMAIL),
                (f"ip:{client[:70]}", PASSWORD_PER_CLIENT),
            ],
            now,
        )

    def refused(self, email: str, client: str, now: datetime) -> None:
        self._record([f"email:{_digest(email)}", f"ip:{client[:70]}"], now)

    def succeeded(self, email: str) -> None:
        with self.uow.begin() as session:
            session.execute(
                delete(LoginAttempt).where(LoginAttempt.key == f"email:{_digest(email)}")
            )

    # ---------------------------------------------------------------- login links

    def take_link(self, email: str, client: str, now: datetime) -> bool:
        """Whether a login link may be mailed now; counts the request either way."""
        keys = [(f"link:{_digest(email)}", LINKS_PER_EMAIL), (f"ip-link:{client[:65]}",
                                                              LINKS_PER_CLIENT)]  # fmt: skip
        allowed = self._wait(keys, now) == 0
        self._record([k for k, _ in keys], now)
        return allowed

    # -------------------------------------------------------------------- storage

    def _wait(self, limits: list[tuple[str, Limit]], now: datetime) -> float:
        wait = 0.0
        with self.uow.read() as session:
            for key, limit in limits:
                recent = session.scalars(
                    select(LoginAttempt.at)
                    .where(LoginAttempt.key == key, LoginAttempt.at > now - limit.window)
                    .order_by(LoginAttempt.at.desc())
                    .limit(limit.count)
                ).all()
                if len(recent) >= limit.count:
                    free_at = recent[-1] + limit.window
                    wait = max(wait, (free_at - now).total_seconds())
        return wait

    def _record(self, keys: list[str], now: datetime) -> None:
        with self.uow.begin() as session:
            session.execute(delete(LoginAttempt).where(LoginAttempt.at < now - KEEP))
            session.add_all(LoginAttempt(key=key, at=now) for key in keys)
