"""Tasks of the qrcodes context: each deserialises its event and calls one service function."""

from __future__ import annotations

from datetime import timedelta

from app.qrcodes import jobs
from app.qrcodes.events import RenderRequested
from workers.celery_app import celery_app
from workers.retries import retry_on_database_down
from workers.runtime import runtime


@celery_app.task(name=RenderRequested.task_name, **retry_on_database_down)
def render(event: dict) -> str:
    requested = RenderRequested.model_validate(event)
    resources = runtime()
    return jobs.render_code(resources.sessions, resources.store, requested.code_id)


@celery_app.task(name="qrcodes.republish_stale_renders", **retry_on_database_down)
def republish_stale_renders() -> int:
    resources = runtime()
    return jobs.republish_stale_renders(
        resources.sessions,
        resources.publisher,
        older_than=timedelta(seconds=resources.settings.render_republish_after_seconds),
    )
