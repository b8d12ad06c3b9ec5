"""Analytics: a thin adapter from HTTP to the analytics service (reads from buckets, CSV exports, and a
rollup on demand). How rollups and the numbers work: app/analytics/rollup.py and service.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from app.analytics import service
from app.analytics.events import RollupRequested
from app.analytics.schemas import CodeAnalytics, WorkspaceAnalytics
from app.analytics.window import MAX_POINTS, Interval, Window, resolve
from app.gateway.deps import Reader, SessionDep, TrackedTasksDep, require
from app.gateway.errors import error_responses
from app.identity.models import Scope
from app.identity.service import Principal
from app.kit.db import utcnow
from app.kit.tracked_tasks import TaskAccepted

router = APIRouter(tags=["analytics"])

# The rollup folds every workspace's scans and its report counts them all: an operator's, not a workspace's.
Operator = Annotated[Principal, Depends(require(Scope.OPERATOR))]

_READ = (401, 404, 422, 429)
From = Annotated[
    datetime | None,
    Query(alias="from", description="ISO-8601; without an offset, in `tz`. Default: 30 days before `to`."),
]
To = Annotated[datetime | None, Query(description="ISO-8601; without an offset, in `tz`. Default: now.")]
Tz = Annotated[
    str | None,
    Query(
        max_length=64, description="An IANA time zone (Europe/Paris): days are cut and points shown in it. Default UTC."
    ),
]
IntervalQuery = Annotated[
    Interval, Query(description=f"Points of a UTC hour or of a day in `tz`; at most {MAX_POINTS} points.")
]
_CSV = {"text/csv": {"schema": {"type": "string"}}}
_DISPOSITION = {
    "Content-Disposition": {
        "description": "attachment, with a file name", "required": True, "schema": {"type": "string"}
    }
}
_UNAVAILABLE = "The task queue (Redis) is unreachable: nothing was started; retry shortly"


class CSVStream(StreamingResponse):
    media_type = "text/csv"


async def series_window(from_: From = None, to: To = None, interval: IntervalQuery = "day", tz: Tz = None) -> Window:
    """The range and points of a code's series: the same query on its JSON and its CSV route."""
    return resolve(from_, to, interval, tz, utcnow())


SeriesWindow = Annotated[Window, Depends(series_window)]


@router.get(
    "/v1/qrcodes/{code_id}/analytics",
    response_model=CodeAnalytics,
    responses=error_responses(*_READ),
    summary="A code's scans over time, unique visitors and breakdowns, from the rollups",
    description="Counts everything rolled up (`as_of`); rollups run every minute. A static code has no "
    "scans: scanning it never reaches this server.",
)
async def code_analytics(
    code_id: uuid.UUID, principal: Reader, session: SessionDep, window: SeriesWindow
) -> CodeAnalytics:
    return await service.code_analytics(session, principal.workspace_id, code_id, window)


@router.get(
    "/v1/qrcodes/{code_id}/analytics.csv",
    response_class=Response,  # not CSVStream: error bodies stay documented as JSON
    responses={
        200: {"description": "The series: ts, scans, unique, bots", "content": _CSV, "headers": _DISPOSITION},
        **error_responses(*_READ),
    },
    summary="A code's series as CSV",
)
async def code_analytics_csv(
    code_id: uuid.UUID, principal: Reader, session: SessionDep, window: SeriesWindow
) -> StreamingResponse:
    analytics = await service.code_analytics(session, principal.workspace_id, code_id, window)
    return CSVStream(service.series_csv(analytics), headers=_attachment(f"qrcode-{code_id}-analytics.csv"))


@router.get(
    "/v1/qrcodes/{code_id}/scans.csv",
    response_class=Response,  # not CSVStream: error bodies stay documented as JSON
    responses={
        200: {
            "description": "Every stored scan, oldest first, with the fields of GET /v1/qrcodes/{id}/scans (never "
            "an IP address). Streamed: any size. Scans older than the server's retention are gone.",
            "content": _CSV,
            "headers": _DISPOSITION,
        },
        **error_responses(*_READ),
    },
    summary="A code's raw scans as CSV",
)
async def scans_csv(
    code_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    request: Request,
    from_: Annotated[datetime | None, Query(alias="from", description="ISO-8601; UTC without an offset")] = None,
    to: Annotated[datetime | None, Query(description="ISO-8601; UTC without an offset")] = None,
) -> StreamingResponse:
    start, end = service.check_range(from_, to)
    link_id = await service.scans_csv_link(session, principal.workspace_id, code_id)  # 404 before streaming
    # The request's session would keep its connection until the download ends (FastAPI closes it after the
    # response); on SQLite the gateway has one. Each page below takes one for as long as it is read.
    await session.close()
    lines = service.scans_csv(request.app.state.sessions, link_id, start, end)
    return CSVStream(lines, headers=_attachment(f"qrcode-{code_id}-scans.csv"))


@router.get(
    "/v1/analytics",
    response_model=WorkspaceAnalytics,
    responses=error_responses(401, 422, 429),
    summary="The workspace's totals and most scanned codes",
    description="The range is widened to whole days in `tz`.",
)
async def workspace_analytics(
    principal: Reader,
    session: SessionDep,
    from_: From = None,
    to: To = None,
    tz: Tz = None,
    top: Annotated[int, Query(ge=1, le=100, description="How many codes to list")] = 10,
) -> WorkspaceAnalytics:
    window = resolve(from_, to, "day", tz, utcnow())
    return await service.workspace_analytics(session, principal.workspace_id, window, top)


@router.post(
    "/v1/analytics/rollup",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    responses={
        202: {
            "description": "Accepted: a rollup runs now (beat runs one every minute anyway)",
            "headers": {
                "Location": {"description": "The task's state", "required": True, "schema": {"type": "string"}}
            },
        },
        **error_responses(401, 403, 409, 413, 422, 429, 503, _503=_UNAVAILABLE,
                          _403="Only an operator-scope key may start the (platform-wide) rollup",
                          _409="A request with the same Idempotency-Key is still being processed"),
    },
    summary="Roll up every workspace's stored scans now (operator)",
)
async def request_rollup(principal: Operator, tasks: TrackedTasksDep, response: Response) -> TaskAccepted:
    task_id = await tasks.start(RollupRequested(workspace_id=principal.workspace_id), principal.workspace_id)
    response.headers["Location"] = f"/v1/tasks/{task_id}"
    return TaskAccepted(task_id=task_id)


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}
