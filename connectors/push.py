"""What the receiving side of webhook push (Graph, Google) hands back to the web layer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PushReply:
    """The HTTP answer to give the provider for one notification request."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
