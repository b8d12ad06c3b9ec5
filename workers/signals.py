"""Celery signal handlers: logging through structlog, request ids across the broker, per-process set-up."""

from __future__ import annotations

import structlog
from celery import signals

from app.logging import configure_logging
from app.settings import get_settings
from workers import runtime

REQUEST_ID_HEADER = "qrflow_request_id"


@signals.setup_logging.connect
def _setup_logging(**_: object) -> None:
    # Connecting this signal stops Celery from installing its own handlers: one pipeline for all.
    configure_logging(get_settings(), service="worker")


@signals.worker_process_init.connect
def _fresh_resources_after_fork(**_: object) -> None:
    runtime.forget_inherited_runtime()


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
