"""/v1/tasks: the state of a task this workspace started (app/kit/tracked_tasks.py)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from app.gateway.deps import Reader, TrackedTasksDep
from app.gateway.errors import error_responses
from app.kit.errors import NotFound
from app.kit.tracked_tasks import TaskState

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


@router.get(
    "/{task_id}",
    response_model=TaskState,
    responses=error_responses(
        401, 404, 422, 429, 503,
        _404="No such task started by this workspace (or it finished more than a day ago)",
        _503="The task store (Redis) is unreachable; retry shortly",
    ),
    summary="A task's state: PENDING, STARTED, SUCCESS (with its result) or FAILURE",
)
async def get_task(task_id: uuid.UUID, principal: Reader, tasks: TrackedTasksDep) -> TaskState:
    state = await tasks.state(task_id, principal.workspace_id)
    if state is None:
        raise NotFound(f"no task with id {task_id}", field="task_id")
    return state
