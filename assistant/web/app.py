"""The web app: a health endpoint and a plain status page, served by ``assistant run``."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from assistant.store.tables import Account, OutboxEntry, Pair

if TYPE_CHECKING:
    from assistant.bootstrap import Service


def create_app(svc: Service) -> Starlette:
    def status() -> dict[str, Any]:
        try:
            with svc.uow.read() as session:
                session.execute(text("SELECT 1"))
                accounts = [
                    {
                        "id": a.id,
                        "name": a.name,
                        "provider": a.provider,
                        "state": a.state,
                        "last_sync_at": a.last_sync_at.isoformat() if a.last_sync_at else None,
                        "last_error": a.last_error,
                    }
                    for a in session.scalars(select(Account).order_by(Account.id))
                ]
                counts = dict(
                    session.execute(
                        select(OutboxEntry.state, func.count()).group_by(OutboxEntry.state)
                    ).all()
                )
                pairs = session.scalar(select(func.count()).select_from(Pair)) or 0
        except SQLAlchemyError as exc:
            return {"status": "error", "database": f"unreachable: {type(exc).__name__}"}
        degraded = any(a["state"] == "error" for a in accounts) or counts.get("dead", 0) > 0
        return {
            "status": "degraded" if degraded else "ok",
            "database": "ok",
            "pairs": pairs,
            "accounts": accounts,
            "outbox": counts,
        }

    async def health(request: Request) -> JSONResponse:
        body = status()
        return JSONResponse(body, status_code=503 if body["status"] == "error" else 200)

    async def index(request: Request) -> HTMLResponse:
        body = status()
        rows = "".join(
            f"<tr><td>{escape(a['name'])}</td><td>{escape(a['provider'])}</td>"
            f"<td>{escape(a['state'])}</td><td>{escape(a['last_sync_at'] or '—')}</td>"
            f"<td>{escape(a['last_error'] or '')}</td></tr>"
            for a in body.get("accounts", [])
        )
        page = (
            "<!doctype html><html lang=en><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            "<title>exec-assistant</title><body style='font-family: system-ui, sans-serif'>"
            f"<h1>exec-assistant</h1><p>Status: <strong>{escape(body['status'])}</strong></p>"
            "<table><tr><th>Account</th><th>Provider</th><th>State</th><th>Last sync</th>"
            f"<th>Last error</th></tr>{rows}</table>"
            f"<p>Outbox: {escape(str(body.get('outbox', {})))}</p></body></html>"
        )
        return HTMLResponse(page)

    return Starlette(routes=[Route("/health", health), Route("/", index)])
