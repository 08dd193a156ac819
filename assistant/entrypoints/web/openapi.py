"""The OpenAPI description of /api/, written by hand from one compact table."""

from __future__ import annotations

from typing import Any

from assistant.domain.priorities import RULE_KINDS

_PAIR = {"name": "pair_id", "in": "path", "required": True, "schema": {"type": "integer"}}


def _id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}


def _query(name: str, kind: str, text: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": kind},
        "description": text,
    }


# path, method, summary, parameters, request body schema (or None), success status
_OPERATIONS: list[tuple[str, str, str, list[dict[str, Any]], dict[str, Any] | None, int]] = [
    (
        "/api/login",
        "post",
        "Log in with email and password (sets the session cookie); 429 with Retry-After "
        "after 5 refused logins for an address (locked 15 minutes, doubled by each further "
        "refusal, at most 4 hours) or 30 from a client in 15 minutes",
        [],
        {
            "type": "object",
            "required": ["email", "password"],
            "properties": {"email": {"type": "string"}, "password": {"type": "string"}},
        },
        200,
    ),
    ("/api/logout", "post", "End the session", [], None, 200),
    ("/api/me", "get", "The logged-in user and the CSRF token for unsafe methods", [], None, 200),
    (
        "/api/me/password",
        "post",
        "Change one's own password (the current one is needed); one's other sessions end. "
        "A wrong current password counts as a refused login (429 when locked)",
        [],
        {
            "type": "object",
            "required": ["current_password", "new_password"],
            "properties": {
                "current_password": {"type": "string"},
                "new_password": {"type": "string", "minLength": 10},
            },
        },
        200,
    ),
    ("/api/pairs", "get", "The pairs this user may see", [], None, 200),
    (
        "/api/pairs/{pair_id}/agenda",
        "get",
        "The manager's agenda (private events as busy time)",
        [
            _PAIR,
            _query("date", "string", "first day, YYYY-MM-DD (default today)"),
            _query("days", "integer", "1 (today) to 31; 7 for a week"),
        ],
        None,
        200,
    ),
    (
        "/api/pairs/{pair_id}/changes",
        "get",
        "Detected changes and where each notification went",
        [_PAIR, _query("limit", "integer", "at most this many (1-500)")],
        None,
        200,
    ),
    (
        "/api/pairs/{pair_id}/outbox/{entry_id}/retry",
        "post",
        "Retry a dead-lettered notification",
        [_PAIR, _id("entry_id")],
        None,
        200,
    ),
    ("/api/pairs/{pair_id}/priorities", "get", "The manager's priority rules", [_PAIR], None, 200),
    (
        "/api/pairs/{pair_id}/priorities",
        "post",
        "Add a priority rule (editors only)",
        [_PAIR],
        {
            "type": "object",
            "required": ["kind", "pattern", "level"],
            "properties": {
                "kind": {"type": "string", "enum": list(RULE_KINDS)},
                "pattern": {"type": "string"},
                "level": {"type": "string", "enum": ["high", "normal", "low"]},
                "note": {"type": "string"},
            },
        },
        201,
    ),
    (
        "/api/pairs/{pair_id}/priorities/{rule_id}",
        "delete",
        "Remove a priority rule (editors only)",
        [_PAIR, _id("rule_id")],
        None,
        200,
    ),
    (
        "/api/pairs/{pair_id}/latency",
        "get",
        "Reply latency: summary (working and wall minutes), open messages, weekly trend",
        [_PAIR],
        None,
        200,
    ),
    ("/api/pairs/{pair_id}/latency.csv", "get", "Every latency record as CSV", [_PAIR], None, 200),
    (
        "/api/pairs/{pair_id}/tasks",
        "get",
        "Delegated tasks with their Red Line and Dead Line",
        [_PAIR],
        None,
        200,
    ),
    (
        "/api/pairs/{pair_id}/tasks",
        "post",
        "Delegate a task (editors only); a deadline in the past is refused (400), a "
        "term_start in the past needs confirm_past_start: true",
        [_PAIR],
        {
            "type": "object",
            "required": ["title", "deadline"],
            "properties": {
                **{
                    k: {"type": "string"}
                    for k in (
                        "title",
                        "delegate",
                        "term_start",
                        "deadline",
                        "result",
                        "measure",
                        "resources",
                        "why",
                    )
                },
                "confirm_past_start": {"type": "boolean"},
            },
        },
        201,
    ),
    ("/api/pairs/{pair_id}/tasks/{task_id}", "get", "One task", [_PAIR, _id("task_id")], None, 200),
    (
        "/api/pairs/{pair_id}/tasks/{task_id}/dead-line",
        "post",
        "The manager corrects the recorded Dead Line answer (the earlier one stays as history)",
        [_PAIR, _id("task_id")],
        {
            "type": "object",
            "required": ["percent_done", "on_time"],
            "properties": {
                "percent_done": {"type": "number", "minimum": 0, "maximum": 100},
                "on_time": {"type": "boolean"},
                "quality": {"type": "string"},
                "comment": {"type": "string"},
            },
        },
        200,
    ),
    (
        "/api/pairs/{pair_id}/accounts",
        "get",
        "Connected accounts: last sync, state, status in words",
        [_PAIR],
        None,
        200,
    ),
    ("/api/pairs/{pair_id}/settings", "get", "The pair's settings", [_PAIR], None, 200),
    (
        "/api/pairs/{pair_id}/settings",
        "put",
        "Change the pair's settings (editors only)",
        [_PAIR],
        {
            "type": "object",
            "properties": {
                "timezone": {"type": "string"},
                "assistant_timezone": {"type": "string"},
                "working_hours": {"type": "object"},
                "sla_minutes": {"type": "integer"},
                "quiet_hours": {"type": "object"},
                "digest_time": {"type": "string"},
                "notify_channels": {"type": "array", "items": {"type": "string"}},
                "locale": {"type": "string", "enum": ["en", "ru"]},
                "share_private_details": {"type": "boolean"},
            },
        },
        200,
    ),
]

_ERRORS = {
    "400": {
        "description": "Invalid input",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
    "401": {"description": "Not logged in"},
    "403": {
        "description": "CSRF token missing or wrong, Origin or Sec-Fetch-Site of another "
        "site, or not allowed to edit"
    },
    "404": {"description": "Not found, or not visible to this user"},
    "413": {"description": "The body is larger than web.max_body_bytes"},
    "415": {"description": "A body not sent as Content-Type: application/json"},
}


def operations() -> list[tuple[str, str]]:
    """(path, method) of every documented operation."""
    return [(path, method) for path, method, *_ in _OPERATIONS]


def openapi() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for path, method, summary, params, body, status in _OPERATIONS:
        op: dict[str, Any] = {
            "summary": summary,
            "parameters": params,
            "responses": {str(status): {"description": "OK"}, **_ERRORS},
        }
        if path != "/api/login":
            op["security"] = [{"session": []}]
        if method in ("post", "put", "delete") and path != "/api/login":
            op["parameters"] = [
                *params,
                {
                    "name": "X-CSRF-Token",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                },
            ]
        if body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "exec-assistant",
            "version": "1",
            "description": "The pair's agenda, changes, priorities, latency, tasks, accounts "
            "and settings.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "ea_session"}
            },
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "string"}}}},
        },
    }
