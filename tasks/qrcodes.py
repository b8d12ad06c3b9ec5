"""Tasks of the qrcodes context: each deserialises its event and calls one service function."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.exc import InterfaceError, OperationalError

from app.qrcodes import jobs
from app.qrcodes.events import RenderRequested
from workers.celery_app import celery_app
from workers.runtime import runtime

# The database being away is a fault to wait out, not a failed render: retry with capped exponential
# backoff for about an hour. Each retry is a new message, published before this one is acknowledged.
DATABASE_DOWN = (OperationalError, InterfaceError)
_retry_on_database_down = {
    "autoretry_for": DATABASE_DOWN,
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 40,
}


@celery_app.task(name=RenderRequested.task_name, **_retry_on_database_down)
def render(event: dict) -> str:
    requested = RenderRequested.model_validate(event)
    resources = runtime()
    return jobs.render_code(resources.sessions, resources.store, requested.code_id)


@celery_app.task(name="qrcodes.republish_stale_renders", **_retry_on_database_down)
def republish_stale_renders() -> int:
    resources = runtime()
    return jobs.republish_stale_renders(
        resources.sessions,
        resources.publisher,
        older_than=timedelta(seconds=resources.settings.render_republish_after_seconds),
    )
