"""``GET /ics/{token}.ics``: a pair's checkpoints as a subscribable calendar (signed URL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from assistant.domain.signing import TokenError
from assistant.services.checkpoint_feed import feed, pair_of_token

if TYPE_CHECKING:
    from assistant.bootstrap import Service


def routes(svc: Service) -> list[Route]:
    async def ics(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            pair_id = pair_of_token(svc, token)
            body = feed(svc, pair_id)
        except (TokenError, LookupError):
            return PlainTextResponse("not a valid calendar link\n", status_code=404)
        return Response(
            body,
            media_type="text/calendar; charset=utf-8",
            headers={"Cache-Control": "private, max-age=300", "Referrer-Policy": "no-referrer"},
        )

    return [Route("/ics/{token}.ics", ics, methods=["GET"])]
