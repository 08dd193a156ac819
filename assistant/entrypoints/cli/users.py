"""``assistant user``: people who log in to the web app."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from assistant.entrypoints.cli.common import (
    JsonOpt,
    PairOpt,
    UserError,
    emit,
    out,
    service,
    table,
)

user_app = typer.Typer(help="People who log in to the web app.", no_args_is_help=True)


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="Their email address (the login).")],
    role: Annotated[str, typer.Option(help="manager, assistant or admin.")] = "assistant",
    name: Annotated[str, typer.Option(help="Their name.")] = "",
    password_env: Annotated[
        str, typer.Option(help="Read the password from this env variable (else: email link).")
    ] = "",
    pair: PairOpt = None,
    organisation: Annotated[str, typer.Option(help="Agency, for admins.")] = "",
) -> None:
    """Add a user and (with --pair) give them the pair, as its manager or assistant."""
    from assistant.services.users import add_membership, add_user

    password = None
    if password_env:
        password = os.environ.get(password_env)
        if not password:
            raise UserError(f"environment variable {password_env} is empty or not set")
    with service() as svc:
        uid = add_user(svc, email=email, role=role, name=name, password=password,
                       organisation=organisation or None)  # fmt: skip
        if pair is not None:
            if role not in ("manager", "assistant"):
                raise UserError("--pair is for a manager or an assistant")
            add_membership(svc, user=uid, pair=pair, role=role)
    out.print(f"user {uid} ({email}) added" + (f" to pair {pair}" if pair else ""))


@user_app.command("passwd")
def user_passwd(
    email: Annotated[str, typer.Argument(help="The user's email address.")],
    password_env: Annotated[
        str, typer.Option(help="Read the new password from this env variable.")
    ],
) -> None:
    """Set (reset) a user's password; every session of theirs ends."""
    from assistant.services.users import set_password

    password = os.environ.get(password_env)
    if not password:
        raise UserError(f"environment variable {password_env} is empty or not set")
    with service() as svc:
        ended = set_password(svc, email, password)
    out.print(f"password of {email} changed; {ended} session(s) ended")


@user_app.command("disable")
def user_disable(email: Annotated[str, typer.Argument(help="The user's email address.")]) -> None:
    """Stop a user from logging in; their sessions end at once."""
    from assistant.services.users import set_active

    with service() as svc:
        set_active(svc, email, False)
    out.print(f"{email} disabled; their sessions ended")


@user_app.command("enable")
def user_enable(email: Annotated[str, typer.Argument(help="The user's email address.")]) -> None:
    """Let a disabled user log in again."""
    from assistant.services.users import set_active

    with service() as svc:
        set_active(svc, email, True)
    out.print(f"{email} enabled")


@user_app.command("list")
def user_list(as_json: JsonOpt = False) -> None:
    """List users and the pairs they belong to."""
    from assistant.services.users import list_users

    with service() as svc:
        rows = [u.to_json() for u in list_users(svc)]
    if as_json:
        emit(rows)
    else:
        table("Users", ["id", "email", "role", "pairs"],
              [[r["id"], r["email"], r["role"], _pairs(r["pairs"])] for r in rows])


def _pairs(memberships: object) -> str:
    """``alex:assistant`` as ``alex (assistant)``, one a line."""
    names = memberships if isinstance(memberships, list) else []
    return "\n".join(f"{p} ({role})" if role else p
                     for p, _, role in (str(m).partition(":") for m in names))
