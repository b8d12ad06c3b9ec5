"""/v1/admin: platform-wide operations an operator-scope key may start (Celery tasks, state via /v1/tasks).

They act on every workspace, so a workspace's admin may not start them (as for the rollup).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.analytics.events import ReclassifyRequested
from app.gateway.deps import TrackedTasksDep
from app.gateway.errors import error_responses
from app.gateway.routers.analytics import Operator
from app.kit.tracked_tasks import TaskAccepted

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post(
    "/reclassify",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    responses={
        202: {
            "description": "Accepted: stored scans are judged again; GET the Location for progress and the result",
            "headers": {
                "Location": {"description": "The task's state", "required": True, "schema": {"type": "string"}}
            },
        },
        **error_responses(401, 403, 409, 413, 422, 429, 503,
                          _503="The task queue is unreachable; retry shortly",
                          _403="Only an operator-scope key may reclassify scans",
                          _409="A request with the same Idempotency-Key is still being processed"),
    },
    summary="Judge stored scans again with the current crawler lists, and recount what changed (operator)",
    description="Re-evaluates bot, device, OS and browser of every stored scan scanned since `since` (UTC day; "
    "default: all), updates the scans whose verdict changed, moves scans_total by the scans that became or "
    "stopped being a person's, and recounts the analytics buckets from the first day changed. One transaction: "
    "the old numbers stay until the new ones are all there.",
)
async def request_reclassify(
    principal: Operator,
    tasks: TrackedTasksDep,
    response: Response,
    since: Annotated[date | None, Query(description="First UTC day whose scans are judged again")] = None,
) -> TaskAccepted:
    event = ReclassifyRequested(workspace_id=principal.workspace_id, since=since)
    task_id = await tasks.start(event, principal.workspace_id)
    response.headers["Location"] = f"/v1/tasks/{task_id}"
    return TaskAccepted(task_id=task_id)
