"""Tasks of the scans context: each deserialises its events and calls one service function."""

from __future__ import annotations

import structlog
from pydantic import ValidationError

from app.scans import ingest, partitions
from app.scans.events import ScanRecorded
from workers.celery_app import celery_app
from workers.retries import retry_on_database_down
from workers.runtime import runtime

log = structlog.get_logger(__name__)


@celery_app.task(name=ScanRecorded.task_name, **retry_on_database_down)
def record(events: list[str]) -> int:
    """A batch of ScanRecorded events from a gateway's spool (app/scans/spool.py), each a JSON string."""
    scans = []
    for event in events:
        try:
            scans.append(ScanRecorded.model_validate_json(event))
        except ValidationError as exc:
            # One malformed event (a newer version than this worker knows, a torn line) must not hold
            # back the rest of its batch, nor be retried for ever.
            log.error("scan_event_refused", event=event[:200], error=str(exc))
    resources = runtime()
    return ingest.record_scans(resources.sessions, resources.enricher, scans)


@celery_app.task(name="scans.purge_visitor_salts", **retry_on_database_down)
def purge_visitor_salts() -> int:
    return ingest.purge_visitor_salts(runtime().sessions)


@celery_app.task(name="scans.create_partitions", **retry_on_database_down)
def create_partitions() -> list[str]:
    """The coming months' partitions of `scans` (PostgreSQL; a no-op on SQLite)."""
    resources = runtime()
    created = partitions.create_ahead(resources.sessions, resources.settings.scan_partitions_ahead)
    if created:
        log.info("scans_partitions_created", months=[str(month) for month in created])
    return [str(month) for month in created]
