"""Tasks of batches: each deserialises its event and calls one service function."""

from __future__ import annotations

from app.qrcodes import recovery
from app.qrcodes.batches import jobs
from app.qrcodes.batches.events import BatchChunkRequested
from workers.celery_app import celery_app
from workers.retries import retry_on_database_down, retry_on_database_or_store_down
from workers.runtime import attempts, lost_after, runtime

# A chunk hands its remaining codes on after this share of the soft time limit (celeryconfig.py; of the
# hard one if there is no soft one): the limit is for a stuck task, and must never cut short a chunk that
# is merely long.
_BUDGET_SHARE = 0.5


@celery_app.task(name=BatchChunkRequested.task_name, **retry_on_database_or_store_down)
def render_batch(event: dict) -> dict[str, int]:
    chunk = BatchChunkRequested.model_validate(event)
    resources = runtime()
    budget = (celery_app.conf.task_soft_time_limit or celery_app.conf.task_time_limit) * _BUDGET_SHARE
    return jobs.render_chunk(
        resources.sessions, resources.store, resources.publisher, chunk, budget, attempts(resources.settings)
    )


@celery_app.task(name="qrcodes.republish_stale_batch_renders", **retry_on_database_down)
def republish_stale_batch_renders() -> int:
    resources = runtime()
    return recovery.republish_lost_batch_renders(
        resources.sessions,
        resources.publisher,
        resources.inventory,
        lost_after(resources.settings),
        chunk_size=resources.settings.batch_chunk_size,
    )
