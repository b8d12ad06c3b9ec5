"""Tasks of the analytics context: each deserialises its event and calls one service function."""

from __future__ import annotations

import structlog

from app.analytics import reclassify as reclassifications
from app.analytics import rollup as rollups
from app.analytics.events import ReclassifyRequested, RollupRequested
from workers.celery_app import celery_app
from workers.retries import retry_on_database_down
from workers.runtime import runtime

log = structlog.get_logger(__name__)

# A run stops folding after this share of the soft time limit (celeryconfig.py) and hands the rest to the
# next run: the limit is for a stuck task, and must never cut short a rollup that merely has a backlog.
_BUDGET_SHARE = 0.5


@celery_app.task(name=RollupRequested.task_name, **retry_on_database_down)
def rollup(event: dict | None = None) -> dict:
    """Beat's periodic rollup (no event), or one a client asked for (RollupRequested)."""
    if event is not None:
        log.info("analytics_rollup_requested", workspace_id=str(RollupRequested.model_validate(event).workspace_id))
    resources = runtime()
    report = rollups.rollup(
        resources.sessions,
        retention_days=resources.settings.scan_retention_days,
        budget_seconds=(celery_app.conf.task_soft_time_limit or 60) * _BUDGET_SHARE,
    )
    if not report.caught_up:
        # A backlog (workers were down, or a first run over a big table): carry on at once rather than at the
        # next beat. Runs take turns on the state row's lock, so a beat run meanwhile does no harm.
        celery_app.send_task(RollupRequested.task_name, ignore_result=True)
    return report.to_dict()


# Under the broker's visibility_timeout (celeryconfig.py), so a long run is never delivered twice; a run cut
# short changes nothing (one transaction) and is simply retried by asking again.
_RECLASSIFY_SOFT_LIMIT = 840


@celery_app.task(
    name=ReclassifyRequested.task_name, bind=True, soft_time_limit=_RECLASSIFY_SOFT_LIMIT,
    time_limit=_RECLASSIFY_SOFT_LIMIT + 30, **retry_on_database_down,
)
def reclassify_scans(self, event: dict) -> dict:  # noqa: ANN001 - Celery's bound task
    """Judge stored scans again (ReclassifyRequested); progress as the task's PROGRESS state."""
    request = ReclassifyRequested.model_validate(event)
    log.info("scans_reclassify_requested", workspace_id=str(request.workspace_id), since=str(request.since))

    def progress(report: reclassifications.ReclassifyReport) -> None:
        if self.request.id:
            self.update_state(state="PROGRESS", meta=report.to_dict())

    return reclassifications.reclassify(runtime().sessions, request.since, progress=progress).to_dict()
