"""``assistant run`` and ``assistant demo``: the service itself, and a scenario to watch."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from assistant.entrypoints.cli.common import (
    out,
    state,
)


def run(
    host: Annotated[str | None, typer.Option(help="Web host (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Web port (default from settings).")] = None,
) -> None:
    """Run the service: scheduler, a Huey consumer and the web app, in one process."""
    from assistant.entrypoints.runner import run_service

    run_service(state.settings, host=host, port=port)


def demo(
    serve: Annotated[
        bool, typer.Option(help="Keep the web app up afterwards (Ctrl-C stops).")
    ] = False,
    keep: Annotated[Path | None, typer.Option(help="Keep the demo's files in this folder.")] = None,
    now: Annotated[
        datetime | None,
        typer.Option(
            help="Play the demo in the week of this moment (ISO 8601, e.g. "
            "2026-12-13T23:59+01:00; default: now).",
            formats=["%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"],
        ),
    ] = None,
) -> None:
    """Play a short scenario on embedded servers; needs nothing installed or running."""
    from assistant.entrypoints.demo import run_demo

    if now is not None and now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    raise typer.Exit(run_demo(out, serve=serve, keep=keep, now=now))
