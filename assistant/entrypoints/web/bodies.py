"""Request bodies read within limits: the size while reading, JSON nesting before parsing.

Every JSON body the web app takes (the API, ``/api/login``, the push webhooks) goes
through :func:`read_json` or :func:`parse_json`:

* the body is read chunk by chunk and refused (413) as soon as it passes ``max_bytes``
  (a declared ``Content-Length`` over the limit is refused before reading anything);
* the nesting depth is measured without recursion before ``json.loads`` runs, and more
  than ``max_depth`` levels is a 400 (a 100k-deep ``[[[[…`` would otherwise raise
  RecursionError inside the parser);
* ``NaN``, ``Infinity`` and numbers too large for a float (``1e400``) are refused: every
  number that gets through is finite;
* the API takes only ``Content-Type: application/json`` (415 otherwise): a cross-site
  form or ``fetch`` without a CORS preflight can only send ``text/plain``, form or
  multipart bodies, so it never reaches a JSON endpoint.

Refusals are :class:`BodyRefused` with the HTTP status and a message that names the
limit or the parser's reason and position, never the content.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from itertools import accumulate
from typing import Any

from starlette.requests import Request


class BodyRefused(Exception):
    """A body the app will not read: ``status`` is 400, 413 or 415."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# The longest prefix made of characters outside strings and of complete strings: after it
# comes either the end or a quote that opens a string never closed (invalid JSON; what
# follows is inside that string, so its brackets do not count). Possessive quantifiers:
# no backtracking state is kept, so time and memory stay linear (constant) in the input.
_CLOSED = re.compile(rb'(?:[^"]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+', re.DOTALL)
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def _levels(raw: bytes) -> Iterator[int]:
    """The nesting level after each bracket outside strings (computed in C, lazily)."""
    closed = _CLOSED.match(raw)
    prefix = raw[: closed.end()] if closed else b""
    brackets = _STRING.sub(b"", prefix).translate(None, _NOT_BRACKET)
    return accumulate(map(_STEP.__getitem__, brackets))


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in ``raw`` (0 for a scalar), in linear time.

    Brackets inside strings do not count. For invalid JSON the figure is an upper bound
    of what a parser would descend into before it fails.
    """
    return max(_levels(raw), default=0)


def nests_deeper_than(raw: bytes, max_depth: int) -> bool:
    """``json_depth(raw) > max_depth``, stopping at the first bracket past the limit."""
    return next(filter(max_depth.__lt__, _levels(raw)), None) is not None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number is too large")
    return value


def parse_json(raw: bytes, max_depth: int) -> Any:
    """The JSON value in ``raw``; BodyRefused(400) when it is not JSON, nests deeper than
    ``max_depth`` levels or holds a number that is not finite."""
    if nests_deeper_than(raw, max_depth):
        raise BodyRefused(400, f"the JSON nests deeper than {max_depth} levels")
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise BodyRefused(
            400, f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except UnicodeDecodeError:
        raise BodyRefused(400, "the body is not JSON: not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:  # our number checks; the int digit limit
        reason = str(exc) if "number" in str(exc) else "a number is too long"
        raise BodyRefused(400, f"the body is not JSON we accept: {reason}") from None


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, read chunk by chunk; BodyRefused(413) once it passes ``max_bytes``."""
    too_large = BodyRefused(413, f"the body is larger than {max_bytes} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json"


async def read_json(request: Request, max_bytes: int, max_depth: int) -> Any:
    """The JSON body of an API request (``{}`` when there is none).

    A ``Content-Type`` other than ``application/json`` is refused with 415 before the
    body is read; without one, only an empty body is accepted.
    """
    content_type = request.headers.get("content-type")
    wrong_type = BodyRefused(415, "send the body as Content-Type: application/json")
    if content_type is not None and not is_json_type(content_type):
        raise wrong_type
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        return {}
    if content_type is None:
        raise wrong_type
    return parse_json(raw, max_depth)


def json_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object; BodyRefused(400) for an array, a string…"""
    if not isinstance(value, dict):
        raise BodyRefused(400, "the body must be a JSON object")
    return value
