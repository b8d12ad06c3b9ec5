"""Tasks of the scans context: each deserialises its events and calls one service function."""

from __future__ import annotations

from typing import Any

import structlog
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery import Task
from pydantic import ValidationError

from app.scans import ingest, partitions
from app.scans.events import ScanRecorded
from workers.celery_app import celery_app
from workers.retries import retry_on_database_down
from workers.runtime import runtime

log = structlog.get_logger(__name__)

# A batch that runs out of time (a host too loaded to store it in the soft limit, or stuck past the hard
# one) is stored by a later try: the events are keyed by event id, so a try that stored some of them
# before it was stopped costs nothing. The tries are counted in the message, so a batch that can never
# finish is given up (and logged, event ids included) instead of coming back for ever.
MAX_TIMED_OUT_TRIES = 5
TIMED_OUT_RETRY_SECONDS = 10  # doubled at each try: a loaded host gets time to drain


class _ScanBatchTask(Task):
    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        # Past the hard limit Celery kills the pool process and then, in the worker's main process, calls
        # this before it acknowledges the message: the batch is published again here, or it would be lost.
        if isinstance(exc, TimeLimitExceeded):
            _try_again(self, kwargs["events"], kwargs.get("timed_out", 0) + 1)


def _try_again(task: Task, events: list[str], timed_out: int) -> None:
    if timed_out >= MAX_TIMED_OUT_TRIES:
        ids = [event[:200] for event in events]
        log.error("scan_batch_given_up", tries=timed_out, events=len(events), first_events=ids[:20])
        return
    log.warning("scan_batch_timed_out", tries=timed_out, events=len(events))
    countdown = TIMED_OUT_RETRY_SECONDS * 2 ** (timed_out - 1)
    task.apply_async(kwargs={"events": events, "timed_out": timed_out}, countdown=countdown)


@celery_app.task(name=ScanRecorded.task_name, base=_ScanBatchTask, bind=True, **retry_on_database_down)
def record(self: Task, events: list[str], timed_out: int = 0) -> int:
    """A batch of ScanRecorded events from a gateway's spool (app/scans/spool.py), each a JSON string."""
    try:
        resources = runtime()
        return ingest.record_scans(resources.sessions, resources.enricher, _valid(events))
    except SoftTimeLimitExceeded:
        _try_again(self, events, timed_out + 1)
        return 0


def _valid(events: list[str]) -> list[ScanRecorded]:
    scans = []
    for event in events:
        try:
            scans.append(ScanRecorded.model_validate_json(event))
        except ValidationError as exc:
            # One malformed event (a newer version than this worker knows, a torn line) must not hold
            # back the rest of its batch, nor be retried for ever.
            log.error("scan_event_refused", event=event[:200], error=str(exc))
    return scans


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
