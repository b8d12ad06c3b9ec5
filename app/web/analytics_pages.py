"""Analytics pages (/app/analytics, /app/analytics/codes/{id}) and their CSV downloads: thin adapters over
app.analytics.service, the service behind /v1/analytics and /v1/qrcodes/{id}/analytics."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from app.analytics import service
from app.analytics.window import Window, resolve
from app.gateway.deps import SessionDep, SettingsDep
from app.kit.db import utcnow
from app.qrcodes import service as codes
from app.qrcodes.views import code_out
from app.web.auth import SignedIn
from app.web.templating import PagesDep

router = APIRouter(prefix="/app", include_in_schema=False)

Preset = Literal["24h", "7d", "30d", "12m", "custom"]
PRESETS: dict[str, tuple[str, timedelta]] = {
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
    "12m": ("Last 12 months", timedelta(days=365)),
}
TOP_CODES = 10


def _window(
    range_: Preset,
    from_: datetime | None,
    to: datetime | None,
    tz: str | None,
    interval: Literal["hour", "day"] | None,
) -> Window:
    """The range a preset names (or the custom from/to), resolved as the API resolves its query."""
    if range_ != "custom":
        to = None
        from_ = utcnow() - PRESETS[range_][1]
    interval = interval or ("hour" if range_ == "24h" else "day")
    return resolve(from_, to, interval, tz or None, utcnow())


RangeQuery = Annotated[Preset, Query(alias="range")]
FromQuery = Annotated[datetime | None, Query(alias="from")]
TzQuery = Annotated[str, Query(max_length=64)]
IntervalQuery = Annotated[Literal["hour", "day"] | None, Query()]


@router.get("/analytics", response_class=HTMLResponse)
async def workspace_page(
    request: Request, person: SignedIn, session: SessionDep, pages: PagesDep,
    range_: RangeQuery = "30d", from_: FromQuery = None, to: datetime | None = None, tz: TzQuery = "UTC",
    interval: IntervalQuery = None,
) -> HTMLResponse:
    window = _window(range_, from_, to, tz, interval)
    report = await service.workspace_report(session, person.workspace_id, window, TOP_CODES)
    return pages.render(
        request, "analytics.html", person=person, section="analytics", report=report, code=None,
        query=_query(range_, from_, to, tz, interval), presets=PRESETS,
    )


@router.get("/analytics/codes/{code_id}", response_class=HTMLResponse)
async def code_page(
    request: Request, code_id: uuid.UUID, person: SignedIn, session: SessionDep, settings: SettingsDep,
    pages: PagesDep, range_: RangeQuery = "30d", from_: FromQuery = None, to: datetime | None = None,
    tz: TzQuery = "UTC", interval: IntervalQuery = None,
) -> HTMLResponse:
    window = _window(range_, from_, to, tz, interval)
    report = await service.code_analytics(session, person.workspace_id, code_id, window)
    code = code_out(await codes.get_code(session, person.workspace_id, code_id), settings.public_base_url)
    return pages.render(
        request, "analytics.html", person=person, section="analytics", report=report, code=code,
        query=_query(range_, from_, to, tz, interval), presets=PRESETS,
    )


@router.get("/analytics.csv")
async def workspace_csv(
    person: SignedIn, session: SessionDep, range_: RangeQuery = "30d", from_: FromQuery = None,
    to: datetime | None = None, tz: TzQuery = "UTC", interval: IntervalQuery = None,
) -> StreamingResponse:
    report = await service.workspace_report(session, person.workspace_id, _window(range_, from_, to, tz, interval), 0)
    return _csv(service.series_csv(report), "workspace-analytics.csv")


@router.get("/analytics/codes/{code_id}/analytics.csv")
async def code_csv(
    code_id: uuid.UUID, person: SignedIn, session: SessionDep, range_: RangeQuery = "30d",
    from_: FromQuery = None, to: datetime | None = None, tz: TzQuery = "UTC", interval: IntervalQuery = None,
) -> StreamingResponse:
    window = _window(range_, from_, to, tz, interval)
    report = await service.code_analytics(session, person.workspace_id, code_id, window)
    return _csv(service.series_csv(report), f"qrcode-{code_id}-analytics.csv")


@router.get("/analytics/codes/{code_id}/scans.csv")
async def scans_csv(code_id: uuid.UUID, request: Request, person: SignedIn, session: SessionDep) -> StreamingResponse:
    link_id = await service.scans_csv_link(session, person.workspace_id, code_id)  # 404 before streaming
    await session.close()  # each page of the download takes a connection only while it is read
    return _csv(service.scans_csv(request.app.state.sessions, link_id, None, None), f"qrcode-{code_id}-scans.csv")


def _csv(lines, filename: str) -> StreamingResponse:  # noqa: ANN001 - an iterable of lines, sync or async
    return StreamingResponse(
        lines, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


def _query(
    range_: str, from_: datetime | None, to: datetime | None, tz: str, interval: str | None
) -> dict[str, str]:
    query = {"range": range_, "tz": tz}
    if range_ == "custom":
        query |= {"from": from_.isoformat() if from_ else "", "to": to.isoformat() if to else ""}
    if interval:
        query["interval"] = interval
    return query
