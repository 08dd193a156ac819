"""The ``assistant`` command line.

Errors a user can cause (bad config, unknown pair, unreachable server, bad date) end as
one clear line on stderr and a non-zero exit, never a traceback. Commands that print
data take ``--json``.
"""

from __future__ import annotations

import os
import sys

import typer

from assistant.entrypoints.cli.accounts import account_app
from assistant.entrypoints.cli.common import ConfigOpt, NoSettings, UserError, err, state
from assistant.entrypoints.cli.digest import digest
from assistant.entrypoints.cli.doctor import doctor
from assistant.entrypoints.cli.ics import ics_app
from assistant.entrypoints.cli.install import db_app, init
from assistant.entrypoints.cli.keys import keys_app
from assistant.entrypoints.cli.latency import latency
from assistant.entrypoints.cli.outbox import outbox_app
from assistant.entrypoints.cli.pairs import pair_app
from assistant.entrypoints.cli.priorities import priorities_app
from assistant.entrypoints.cli.serve import demo, run
from assistant.entrypoints.cli.sync import changes, sync
from assistant.entrypoints.cli.tasks import task_app
from assistant.entrypoints.cli.users import user_app

app = typer.Typer(
    name="assistant",
    help="Keeps an executive's assistant in step: schedule changes, reply latency, "
    "delegation checkpoints.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Commands, then sub-apps, in the order `assistant --help` lists them.
SHORT = {  # one line each in `assistant --help` (the docstrings' first sentences are longer)
    init: "Create a settings file.",
    doctor: "Check settings, database, key, SMTP, accounts and queue.",
    sync: "Sync calendars and mailboxes now and deliver.",
    changes: "Detected schedule changes and where they went.",
    digest: "The assistant's daily digest (preview or send).",
    latency: "How fast the manager answers the assistant.",
    run: "Run the service: scheduler, worker and web app.",
    demo: "Play a short scenario on embedded servers.",
}
for command in (init, doctor, sync, changes, digest, latency, run, demo):
    app.command(short_help=SHORT[command])(command)
app.add_typer(db_app, name="db")
app.add_typer(pair_app, name="pair")
app.add_typer(account_app, name="account")
app.add_typer(task_app, name="task")
app.add_typer(task_app, name="tasks", hidden=True)  # `assistant tasks score` reads naturally too
app.add_typer(outbox_app, name="outbox")
app.add_typer(
    priorities_app, name="priorities", short_help="What reaches the assistant at once, what waits."
)
app.add_typer(user_app, name="user")
app.add_typer(keys_app, name="keys")
app.add_typer(ics_app, name="ics")


@app.callback()
def _main(config: ConfigOpt = None) -> None:
    state.config = config
    state._settings = None


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status: 0 done, 1 an error the user can fix, 2 a usage
    mistake or no/invalid settings (typer prints the usage line), 70 a fault of ours."""
    try:  # standalone: typer itself answers usage mistakes (usage line, exit 2) and --help
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except NoSettings as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 2
    except (UserError, LookupError, ValueError, _connector_error()) as exc:  # evaluated late
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 1
    except Exception as exc:
        from config.settings import ConfigError  # loaded already when it was raised

        if not isinstance(exc, ConfigError):
            return _fault(exc)
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _connector_error() -> type[Exception]:
    """``ConnectorError``, imported only when an exception is being matched (an except
    clause's types are evaluated then): ``--help`` does not load the connectors."""
    from connectors.base import ConnectorError

    return ConnectorError


def _fault(exc: Exception) -> int:
    """A fault of ours: say so plainly (the traceback with ASSISTANT_DEBUG=1)."""
    err.print(f"internal error: {type(exc).__name__}: {exc}", markup=False, highlight=False)
    if os.environ.get("ASSISTANT_DEBUG"):
        raise exc
    err.print("set ASSISTANT_DEBUG=1 to see the traceback", markup=False)
    return 70


if __name__ == "__main__":
    sys.exit(main())
