"""Tasks of the qrcodes context: each deserialises its event and calls one service function."""

from __future__ import annotations

from app.qrcodes import jobs, recovery
from app.qrcodes.events import ImagesDeleteRequested, RenderRequested
from workers.celery_app import celery_app
from workers.retries import retry_on_database_down, retry_on_database_or_store_down
from workers.runtime import attempts, lost_after, runtime


@celery_app.task(name=RenderRequested.task_name, **retry_on_database_or_store_down)
def render(event: dict) -> str:
    requested = RenderRequested.model_validate(event)
    resources = runtime()
    return jobs.render_requested(
        resources.sessions, resources.store, resources.publisher, requested.code_id, attempts(resources.settings)
    )


@celery_app.task(name=ImagesDeleteRequested.task_name, **retry_on_database_or_store_down)
def delete_images(event: dict) -> None:
    jobs.delete_images(runtime().store, ImagesDeleteRequested.model_validate(event))


@celery_app.task(name="qrcodes.republish_stale_renders", **retry_on_database_down)
def republish_stale_renders() -> int:
    resources = runtime()
    return recovery.republish_lost_renders(
        resources.sessions, resources.publisher, resources.inventory, lost_after(resources.settings)
    )
