"""Logins: server-side sessions, one-time email links, the session cookie.

The cookie holds a random token; the database holds only its SHA-256, the user, a CSRF
token bound to the session, and two expiries (absolute and idle). Every request looks
the session up again, so logging out, deactivating a user or an expired session takes
effect at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from starlette.requests import Request
from starlette.responses import Response

from assistant.services.outbox import enqueue
from assistant.services.users import password_matches, user_by_email
from assistant.store.tables import LoginLink, User, WebSession

if TYPE_CHECKING:
    from assistant.bootstrap import Service

SESSION_COOKIE = "ea_session"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Viewer:
    """The logged-in user of this request."""

    user_id: int
    email: str
    name: str
    role: str
    locale: str
    csrf_token: str
    session_id: int


def secure_cookies(svc: Service) -> bool:
    return svc.settings.web.public_url.lower().startswith("https://")


def set_cookie(svc: Service, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure_cookies(svc),
    )


def start_session(svc: Service, user_id: int) -> tuple[str, int]:
    """A new session for the user; returns the cookie token and its lifetime in seconds."""
    now = svc.now()
    token = secrets.token_urlsafe(32)
    lifetime = timedelta(hours=svc.settings.web.session_hours)
    with svc.uow.begin() as session:
        session.execute(delete(WebSession).where(WebSession.expires_at < now))
        session.add(
            WebSession(
                token_hash=_hash(token),
                user_id=user_id,
                csrf_token=secrets.token_urlsafe(32),
                created_at=now,
                last_seen_at=now,
                expires_at=now + lifetime,
            )
        )
        user = session.get(User, user_id)
        if user is not None:
            user.last_login_at = now
    return token, int(lifetime.total_seconds())


def viewer_of(svc: Service, request: Request) -> Viewer | None:
    """The user behind the request's session cookie, if the session is alive."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    now = svc.now()
    idle = timedelta(minutes=svc.settings.web.session_idle_minutes)
    with svc.uow.begin() as session:
        row = session.scalars(
            select(WebSession).where(WebSession.token_hash == _hash(token))
        ).first()
        if row is None:
            return None
        user = session.get(User, row.user_id)
        if (
            user is None
            or not user.active
            or row.expires_at <= now
            or row.last_seen_at + idle <= now
        ):
            session.delete(row)
            return None
        if now - row.last_seen_at > timedelta(minutes=1):  # not a write per request
            row.last_seen_at = now
        return Viewer(
            user_id=user.id,
            email=user.email,
            name=user.name or user.email,
            role=user.role,
            locale=user.locale,
            csrf_token=row.csrf_token,
            session_id=row.id,
        )


def end_session(svc: Service, request: Request) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with svc.uow.begin() as session:
            session.execute(delete(WebSession).where(WebSession.token_hash == _hash(token)))


def check_password(svc: Service, email: str, password: str) -> int | None:
    """The user id when the email and password match an active user."""
    with svc.uow.read() as session:
        user = user_by_email(session, email)
        stored = user.password_hash if user is not None else ""
        ok = password_matches(stored, password)
        if user is None or not ok or not user.active:
            return None
        return user.id


def set_locale(svc: Service, user_id: int, locale: str) -> None:
    if locale not in ("en", "ru"):
        raise ValueError("locale must be en or ru")
    with svc.uow.begin() as session:
        user = session.get(User, user_id)
        if user is not None:
            user.locale = locale


# -------------------------------------------------------------------- email login links


def send_login_link(svc: Service, email: str, base_url: str) -> None:
    """Mail a one-time link to a known, active user; silently nothing for anyone else."""
    now = svc.now()
    minutes = svc.settings.web.login_link_minutes
    token = secrets.token_urlsafe(32)
    with svc.uow.begin() as session:
        user = user_by_email(session, email)
        if user is None or not user.active:
            return
        session.add(
            LoginLink(
                token_hash=_hash(token),
                user_id=user.id,
                created_at=now,
                expires_at=now + timedelta(minutes=minutes),
            )
        )
        link = f"{base_url.rstrip('/')}/login/link/{token}"
        ru = user.locale == "ru"
        enqueue(
            session,
            key=f"login-link:{_hash(token)}",
            channel="smtp",
            recipient=user.email,
            subject="Вход в exec-assistant" if ru else "Your exec-assistant login link",
            body_text=(
                f"Ссылка для входа (действует {minutes:g} мин., один раз):\n{link}\n"
                if ru
                else f"Log in with this link (valid for {minutes:g} minutes, once):\n{link}\n"
            ),
            pair_id=None,
            now=now,
        )


def issue_login_link(svc: Service, user_id: int, minutes: float | None = None) -> str:
    """A one-time login token for ``user_id``, handed over directly rather than mailed
    (``assistant demo --serve`` prints it); ``/login/link/<token>`` spends it."""
    now = svc.now()
    token = secrets.token_urlsafe(32)
    lifetime = timedelta(minutes=minutes or svc.settings.web.login_link_minutes)
    with svc.uow.begin() as session:
        if session.get(User, user_id) is None:
            raise LookupError(f"no user with id {user_id}")
        session.add(
            LoginLink(
                token_hash=_hash(token), user_id=user_id, created_at=now, expires_at=now + lifetime
            )
        )
    return token


def use_login_link(svc: Service, token: str) -> int | None:
    """The user id for a fresh, unused link (the link is spent); None otherwise."""
    now = svc.now()
    with svc.uow.begin() as session:
        link = session.scalars(
            select(LoginLink).where(LoginLink.token_hash == _hash(token))
        ).first()
        if link is None or link.used_at is not None or link.expires_at <= now:
            return None
        link.used_at = now
        user = session.get(User, link.user_id)
        return user.id if user is not None and user.active else None
