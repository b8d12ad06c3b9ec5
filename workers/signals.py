"""Celery signal handlers: logging through structlog, request ids across the broker, per-process set-up,
and tracing (app/kit/telemetry.py), set up in the process that runs the tasks.
"""

from __future__ import annotations

import sys

import structlog
from celery import signals
from sqlalchemy.orm import configure_mappers

from app.kit import telemetry
from app.kit.logging import configure_logging
from app.kit.settings import get_settings
from workers import runtime

REQUEST_ID_HEADER = "qrflow_request_id"


def _service() -> str:
    """beat or worker: both run this app, and a line must say which one wrote it."""
    return "beat" if sys.argv[1:2] == ["beat"] else "worker"


@signals.setup_logging.connect
def _setup_logging(**_: object) -> None:
    # Connecting this signal stops Celery from installing its own handlers: one pipeline for all.
    configure_logging(get_settings(), service=_service())


def _say(message: str, *_: object) -> None:
    structlog.get_logger("celery.worker").info(message.strip().removeprefix("worker: "))


@signals.worker_init.connect
def _structured_shutdown_lines(**_: object) -> None:
    # Celery writes "worker: Warm shutdown (MainProcess)" and its like raw to stdout (os.write, safe from
    # a signal handler); here they are log lines like every other. The logging lock is reentrant, so a
    # signal arriving while this thread logs cannot deadlock it.
    from celery.apps import worker

    worker.safe_say = _say


@signals.worker_init.connect
def _user_agent_rules_before_the_fork(sender: object = None, **_: object) -> None:
    # Compiling the crawler and browser rules takes ~1.5 s, far longer on a loaded host: done once in
    # the worker that stores scans, before it forks, every pool process (and each one that replaces a
    # killed one) starts with them, instead of spending its first batch's time limit on them.
    queues = getattr(getattr(sender, "app", None), "amqp", None)
    if queues is not None and "scans" in queues.queues.consume_from:
        from app.scans import agents

        agents.load()
        structlog.get_logger(__name__).info("user_agent_rules_loaded")


@signals.worker_process_init.connect
def _fresh_resources_after_fork(**_: object) -> None:
    runtime.forget_inherited_runtime()
    # SQLAlchemy configures its mappers on first use, otherwise inside the process's first task: a soft
    # time limit raised there (a fresh process on a busy host) leaves the registry half-built, and every
    # later query of that process fails ("One or more mappers failed to initialize"). So before any task.
    import app.models  # noqa: F401 - every mapper, so that all are configured

    configure_mappers()


# Tracing lives in the process that runs tasks. A prefork worker's parent only supervises: setting up the
# tracer provider there would hand a batch exporter's thread and connections to every forked child, so
# each pool process sets up its own after the fork (worker_process_init, as the instrumentation's docs
# say). The solo and threads pools run tasks in the worker's own process: set up in worker_init.


def _pool_forks(pool_cls: object) -> bool:
    from celery.concurrency import ALIASES

    if isinstance(pool_cls, str):
        return ALIASES.get(pool_cls, pool_cls) == ALIASES["prefork"]
    from celery.concurrency.prefork import TaskPool

    return isinstance(pool_cls, type) and issubclass(pool_cls, TaskPool)


def _start_tracing() -> None:
    telemetry.configure_tracing("qrflow-worker")
    telemetry.instrument_celery()


@signals.worker_init.connect
def _tracing_in_the_worker_process(sender: object = None, **_: object) -> None:
    if _pool_forks(getattr(sender, "pool_cls", "prefork")):
        telemetry.import_tracing_modules()  # imports only, inherited by every pool process
    else:
        _start_tracing()


@signals.worker_process_init.connect
def _tracing_in_each_pool_process(**_: object) -> None:
    _start_tracing()  # idempotent: the solo pool sends this too, in the worker's own process


@signals.worker_process_shutdown.connect
def _flush_traces_of_the_pool_process(**_: object) -> None:
    # Pool processes end with os._exit, skipping the SDK's atexit flush: export the last spans first.
    telemetry.flush_traces()


# Beat is not traced: see telemetry.instrument_celery. A periodic task's trace starts in the worker.


@signals.before_task_publish.connect
def _propagate_request_id(headers: dict | None = None, **_: object) -> None:
    """The id of the request (or task) that caused this publish travels in the message headers."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if headers is not None and request_id and REQUEST_ID_HEADER not in headers:
        headers[REQUEST_ID_HEADER] = request_id


@signals.task_prerun.connect
def _bind_task_context(task_id: str, task: object, **_: object) -> None:
    structlog.contextvars.clear_contextvars()
    request = task.request  # type: ignore[attr-defined]
    context = {"task_id": task_id, "task": task.name}  # type: ignore[attr-defined]
    request_id = getattr(request, REQUEST_ID_HEADER, None) or (request.headers or {}).get(REQUEST_ID_HEADER)
    if request_id:
        context["request_id"] = request_id
    structlog.contextvars.bind_contextvars(**context)


@signals.task_postrun.connect
def _clear_task_context(**_: object) -> None:
    structlog.contextvars.clear_contextvars()
