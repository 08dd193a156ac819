"""One gate for every page and API route: login, CSRF, pair access, edit rights.

A route handler is ``async def handler(request, ctx) -> Response``; ``guarded`` wraps it
so that it only runs for a live session, with a valid CSRF token on unsafe methods (and,
for the API, a JSON object body read within ``web.max_body_bytes`` and
``web.max_json_depth``: see ``bodies``), and (for routes under a pair) for a user who may
see that pair. Whether the request comes from this site is checked before any route
(``app.SameSiteAndBounded``). A pair the user may not see
is answered exactly like a pair that does not exist: 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from assistant.entrypoints.web import csrf
from assistant.entrypoints.web.auth import Viewer, viewer_of
from assistant.entrypoints.web.bodies import BodyRefused, json_object, read_json
from assistant.entrypoints.web.i18n import translator
from assistant.services.pairs import NotFoundError
from assistant.services.users import PairAccess, access_to
from assistant.store.tables import User

if TYPE_CHECKING:
    from assistant.bootstrap import Service

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class Ctx:
    svc: Service
    viewer: Viewer
    access: PairAccess | None
    form: FormData | None
    body: Any

    @property
    def pair(self) -> PairAccess:
        assert self.access is not None
        return self.access

    def t(self, key: str) -> str:
        return translator(self.viewer.locale)(key)


Handler = Callable[[Request, Ctx], Awaitable[Response]]
ErrorPage = Callable[[Request, Viewer | None, int, str], Response]


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


MAX_ID = 2**63 - 1  # the largest id a database column holds


def ids_in_range(request: Request) -> bool:
    """Every whole-number path parameter (pair, task, rule… ids) is a possible row id."""
    return all(
        0 < value <= MAX_ID
        for value in request.path_params.values()
        if isinstance(value, int)
    )


def resolve_access(svc: Service, viewer: Viewer, pair_id: int) -> PairAccess | None:
    with svc.uow.read() as session:
        user = session.get(User, viewer.user_id)
        return None if user is None else access_to(session, user, pair_id)


def guarded(
    svc: Service,
    handler: Handler,
    *,
    api: bool,
    error_page: ErrorPage,
    pair: bool = True,
    edit: bool = False,
) -> Endpoint:
    def problem(request: Request, viewer: Viewer | None, status: int, message: str) -> Response:
        if api:
            return JSONResponse({"error": message}, status_code=status)
        return error_page(request, viewer, status, message)

    async def endpoint(request: Request) -> Response:
        viewer = viewer_of(svc, request)
        if viewer is None:
            if api:
                return JSONResponse({"error": "log in first"}, status_code=401)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        t = translator(viewer.locale)
        form: FormData | None = None
        body: Any = None
        if request.method not in csrf.SAFE_METHODS:
            if api:
                given: object = request.headers.get(csrf.HEADER)
            else:
                form = await request.form()
                given = form.get(csrf.FIELD)
            if not csrf.matches(viewer.csrf_token, given):
                return problem(request, viewer, 403, t("csrf"))
            if api:
                web = svc.settings.web
                try:
                    body = json_object(
                        await read_json(request, web.max_body_bytes, web.max_json_depth)
                    )
                except BodyRefused as exc:
                    return problem(request, viewer, exc.status, exc.message)
        if not ids_in_range(request):  # no row has such an id: as for a missing one
            return problem(request, viewer, 404, t("not_found"))
        access = None
        if pair:
            access = resolve_access(svc, viewer, int(request.path_params["pair_id"]))
            if access is None:
                return problem(request, viewer, 404, t("not_found"))
            if edit and not access.may_edit:
                return problem(request, viewer, 403, t("forbidden"))
        ctx = Ctx(svc=svc, viewer=viewer, access=access, form=form, body=body)
        try:
            return await handler(request, ctx)
        except NotFoundError:
            return problem(request, viewer, 404, t("not_found"))
        except HTTPProblem as exc:
            return problem(request, viewer, exc.status, exc.message)
        except ValueError as exc:
            return problem(request, viewer, 400, str(exc))

    endpoint.__name__ = handler.__name__
    return endpoint
