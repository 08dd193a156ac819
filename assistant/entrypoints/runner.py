"""``assistant run``: the scheduler, a Huey consumer and the web app in one process."""

from __future__ import annotations

import logging
from typing import Any

from huey import Huey
from huey.consumer import Consumer

from config.settings import Settings

log = logging.getLogger(__name__)


class EmbeddedConsumer(Consumer):  # type: ignore[misc]
    """A Huey consumer that runs beside other things in this process.

    It leaves signal handling to its host (uvicorn, the demo), which stops it with
    ``stop(graceful=True)``.
    """

    def _set_signal_handlers(self) -> None:
        pass


def start_consumer(huey: Huey, settings: Settings, **options: Any) -> EmbeddedConsumer:
    from jobs.queue import IDLE_READ_SECONDS

    consumer = EmbeddedConsumer(
        huey,
        workers=settings.queue.workers,
        worker_type="thread",
        periodic=settings.queue.scheduler,
        scheduler_interval=1,
        check_worker_health=True,
        **{"max_delay": IDLE_READ_SECONDS, **options},  # an idle worker reads the queue often
    )
    consumer.start()
    return consumer


def run_service(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    from assistant.bootstrap import build, configure_logging
    from assistant.entrypoints.web.app import create_app
    from assistant.services.inbound import warn_inbox_trust
    from assistant.store.migrate import upgrade
    from jobs import runtime
    from jobs.queue import build_huey
    from jobs.tasks import queue_push_signal, register

    configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    svc = build(settings)
    warn_inbox_trust(settings.inbox)
    runtime.install(svc)
    huey = build_huey(settings)
    jobs = register(huey, periodic=settings.queue.scheduler)
    consumer = start_consumer(huey, settings)
    push = None
    if settings.queue.scheduler:  # the one process that schedules also listens for pushes
        from assistant.adapters.push import PushSupervisor

        jobs.sync_due()
        jobs.drain_outbox()
        push = PushSupervisor(svc, lambda account_id: jobs.sync_account(account_id))
        watched = push.start()
        if watched:
            log.info("push (EWS streaming, IMAP IDLE) for accounts %s", watched)
    host = host or settings.web.host
    port = port if port is not None else settings.web.port
    log.info("web app on http://%s:%s/", host, port)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(
                svc,
                on_task_created=lambda task_id: jobs.write_checkpoints(task_id),
                on_push=queue_push_signal,  # Graph / Google webhooks: queue the work
            ),
            host=host, port=port, log_level="warning",
        )
    )
    try:
        server.run()  # returns on Ctrl-C / SIGTERM
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: we are stopping
        pass
    finally:
        if push is not None:
            push.stop()
        log.info("stopping the consumer")
        consumer.stop(graceful=True)
        runtime.install(None)
        svc.engine.dispose()
    log.info("stopped")
