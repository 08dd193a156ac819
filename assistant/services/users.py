"""People who use the web app: users, their memberships in pairs, organisations, access.

Passwords are hashed with argon2id (argon2-cffi). Who sees what is decided here, once,
for the pages and the API alike:

- a manager or an assistant sees the pairs they are a member of;
- an ``admin`` sees the pairs assigned to their organisation (none without one);
- private events show as busy time to everyone but the pair's manager, unless the pair
  shares private details.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from assistant.services.pairs import NotFoundError, check_email, find_pair
from assistant.store.tables import (
    Membership,
    Organisation,
    OrganisationPair,
    Pair,
    User,
    WebSession,
)

if TYPE_CHECKING:
    from assistant.services.deps import Deps

ROLES = ("admin", "manager", "assistant")
PAIR_ROLES = ("manager", "assistant")
LOCALES = ("en", "ru")
MIN_PASSWORD = 10

_hasher = PasswordHasher()
# Verified against when the email is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def password_matches(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and bool(stored)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# ----------------------------------------------------------------------------- writes


def add_organisation(deps: Deps, name: str) -> int:
    name = name.strip()
    if not name:
        raise ValueError("an organisation needs a name")
    with deps.uow.begin() as session:
        if session.scalars(select(Organisation).where(Organisation.name == name)).first():
            raise ValueError(f"an organisation named {name!r} exists already")
        org = Organisation(name=name, created_at=deps.now())
        session.add(org)
        session.flush()
        return org.id


def _organisation(session: Session, ref: str | int) -> Organisation:
    stmt = select(Organisation).where(Organisation.name == str(ref))
    if isinstance(ref, int):
        stmt = select(Organisation).where(Organisation.id == ref)
    org = session.scalars(stmt).first()
    if org is None:
        raise NotFoundError(f"no organisation {ref!r}")
    return org


def assign_pair(deps: Deps, pair: str | int, organisation: str | int | None) -> None:
    """Put a pair in an organisation (its admins then see it); None takes it out."""
    with deps.uow.begin() as session:
        p = find_pair(session, pair)
        row = session.get(OrganisationPair, p.id)
        if organisation is None:
            if row is not None:
                session.delete(row)
            return
        org = _organisation(session, organisation)
        if row is None:
            session.add(OrganisationPair(pair_id=p.id, organisation_id=org.id))
        else:
            row.organisation_id = org.id


def add_user(
    deps: Deps,
    *,
    email: str,
    role: str,
    name: str = "",
    password: str | None = None,
    organisation: str | int | None = None,
    locale: str = "en",
    password_hash: str = "",
) -> int:
    """A new user; without a password they log in by email link only.

    ``password_hash`` takes an argon2 hash made earlier (``hash_password``), e.g. when
    moving users from another installation, instead of a password.
    """
    if password_hash and not password_hash.startswith("$argon2"):
        raise ValueError("password_hash must be an argon2 hash")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if locale not in LOCALES:
        raise ValueError("locale must be en or ru")
    email = check_email(email, "user address")
    if password:
        password_hash = hash_password(password)
    with deps.uow.begin() as session:
        if session.scalars(select(User).where(User.email == email)).first():
            raise ValueError(f"a user {email!r} exists already")
        org_id = _organisation(session, organisation).id if organisation is not None else None
        user = User(
            email=email,
            name=name,
            password_hash=password_hash,
            role=role,
            organisation_id=org_id,
            locale=locale,
            active=True,
            created_at=deps.now(),
        )
        session.add(user)
        session.flush()
        return user.id


def _user(session: Session, ref: str | int) -> User:
    stmt = select(User).where(User.email == str(ref).strip().lower())
    if isinstance(ref, int):
        stmt = select(User).where(User.id == ref)
    user = session.scalars(stmt).first()
    if user is None:
        raise NotFoundError(f"no user {ref!r}")
    return user


def _end_sessions(session: Session, user_id: int, keep: int | None = None) -> int:
    """End the user's web sessions (all, or all but ``keep``); how many ended."""
    stmt = delete(WebSession).where(WebSession.user_id == user_id)
    if keep is not None:
        stmt = stmt.where(WebSession.id != keep)
    return int(getattr(session.execute(stmt), "rowcount", 0) or 0)


def set_password(
    deps: Deps, user: str | int, password: str, *, keep_session: int | None = None
) -> int:
    """Set (or reset) a user's password and end their sessions, all but ``keep_session``
    (the browser that changed it); returns how many sessions ended."""
    hashed = hash_password(password)
    with deps.uow.begin() as session:
        u = _user(session, user)
        u.password_hash = hashed
        return _end_sessions(session, u.id, keep_session)


def change_password(
    deps: Deps, user_id: int, current: str, new: str, *, keep_session: int | None
) -> int:
    """A signed-in user changes their own password: ``current`` must match.

    ValueError when it does not (or the new one is too short); the user's other
    sessions end. Returns how many ended."""
    with deps.uow.read() as session:
        stored = _user(session, user_id).password_hash
    if not password_matches(stored, current):
        raise ValueError("the current password is wrong")
    return set_password(deps, user_id, new, keep_session=keep_session)


def set_active(deps: Deps, user: str | int, active: bool) -> None:
    """Deactivating a user ends their sessions at once; they cannot log in (password or
    email link) until activated again."""
    with deps.uow.begin() as session:
        u = _user(session, user)
        u.active = active
        if not active:
            _end_sessions(session, u.id)


def add_membership(
    deps: Deps,
    *,
    user: str | int,
    pair: str | int,
    role: str,
    may_edit: bool | None = None,
) -> int:
    """Make a user the manager or the assistant of a pair. Managers may edit by default;
    assistants see priorities, tasks and settings read-only unless ``may_edit``."""
    if role not in PAIR_ROLES:
        raise ValueError(f"a pair role is one of {', '.join(PAIR_ROLES)}")
    with deps.uow.begin() as session:
        u = _user(session, user)
        p = find_pair(session, pair)
        edit = (role == "manager") if may_edit is None else may_edit
        row = session.scalars(
            select(Membership).where(Membership.user_id == u.id, Membership.pair_id == p.id)
        ).first()
        if row is None:
            row = Membership(
                user_id=u.id, pair_id=p.id, role=role, may_edit=edit, created_at=deps.now()
            )
            session.add(row)
        else:
            row.role, row.may_edit = role, edit
        session.flush()
        return row.id


def remove_membership(deps: Deps, *, user: str | int, pair: str | int) -> None:
    with deps.uow.begin() as session:
        u, p = _user(session, user), find_pair(session, pair)
        row = session.scalars(
            select(Membership).where(Membership.user_id == u.id, Membership.pair_id == p.id)
        ).first()
        if row is None:
            raise NotFoundError(f"{u.email} is not a member of pair {p.name!r}")
        session.delete(row)


@dataclass(frozen=True, slots=True)
class UserView:
    """A user as ``assistant user list`` shows them: ``pairs`` are ``"pair:role"``."""

    id: int
    email: str
    name: str
    role: str
    organisation: str | None
    active: bool
    password: bool  # whether they have one (else: email link only)
    pairs: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """``assistant user list --json``'s object (``pairs`` a list)."""
        return {**asdict(self), "pairs": list(self.pairs)}


def list_users(deps: Deps) -> list[UserView]:
    with deps.uow.read() as session:
        orgs: dict[int, str] = {
            i: n for i, n in session.execute(select(Organisation.id, Organisation.name))
        }
        pairs: dict[int, str] = {i: n for i, n in session.execute(select(Pair.id, Pair.name))}
        members: dict[int, list[str]] = {}
        for m in session.scalars(select(Membership).order_by(Membership.id)):
            members.setdefault(m.user_id, []).append(f"{pairs.get(m.pair_id, m.pair_id)}:{m.role}")
        return [
            UserView(
                id=u.id,
                email=u.email,
                name=u.name,
                role=u.role,
                organisation=orgs.get(u.organisation_id) if u.organisation_id else None,
                active=u.active,
                password=bool(u.password_hash),
                pairs=tuple(members.get(u.id, [])),
            )
            for u in session.scalars(select(User).order_by(User.id))
        ]


# ----------------------------------------------------------------------------- access


@dataclass(frozen=True, slots=True)
class PairAccess:
    """What one user may do with one pair."""

    pair_id: int
    ref: str | int  # how to name the pair to the services without ambiguity
    pair_name: str
    role: str  # manager | assistant | admin
    may_edit: bool
    sees_private: bool
    timezone: str
    locale: str


def visible_pairs(session: Session, user: User) -> list[Pair]:
    if not user.active:
        return []
    if user.role == "admin":
        if user.organisation_id is None:
            return []
        stmt = (
            select(Pair)
            .join(OrganisationPair, OrganisationPair.pair_id == Pair.id)
            .where(OrganisationPair.organisation_id == user.organisation_id)
        )
    else:
        stmt = (
            select(Pair)
            .join(Membership, Membership.pair_id == Pair.id)
            .where(Membership.user_id == user.id)
        )
    return list(session.scalars(stmt.order_by(Pair.name)))


def access_to(session: Session, user: User, pair_id: int) -> PairAccess | None:
    """The user's access to a pair, or None when they may not see it at all."""
    if not user.active:
        return None
    pair = session.get(Pair, pair_id)
    if pair is None:
        return None
    if user.role == "admin":
        row = session.get(OrganisationPair, pair_id)
        if (
            user.organisation_id is None
            or row is None
            or row.organisation_id != user.organisation_id
        ):
            return None
        role, may_edit = "admin", True
    else:
        m = session.scalars(
            select(Membership).where(Membership.user_id == user.id, Membership.pair_id == pair_id)
        ).first()
        if m is None:
            return None
        role, may_edit = m.role, m.may_edit or m.role == "manager"
    ref = service_ref(session, pair)
    if ref is None:
        return None
    return PairAccess(
        pair_id=pair.id,
        ref=ref,
        pair_name=pair.name,
        role=role,
        may_edit=may_edit,
        sees_private=role == "manager" or pair.share_private_details,
        timezone=pair.timezone,
        locale=pair.locale,
    )


def service_ref(session: Session, pair: Pair) -> str | int | None:
    """A reference that ``find_pair`` resolves to exactly this pair.

    ``find_pair(session, 7)`` matches id 7 *or* a pair named "7"; when another pair is
    named like this one's id, the name is used instead; None if neither is unambiguous.
    """
    by_id = session.scalar(
        select(func.count())
        .select_from(Pair)
        .where(or_(Pair.id == pair.id, Pair.name == str(pair.id)))
    )
    if by_id == 1:
        return pair.id
    if not pair.name.isdigit():
        return pair.name
    return None


def user_by_email(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == email.strip().lower())).first()
