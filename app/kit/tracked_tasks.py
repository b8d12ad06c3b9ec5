"""Tasks a client starts and may then ask about (GET /v1/tasks/{id}), from the gateway.

Results are stored only for these (celeryconfig: task_ignore_result, opted out per message). Who may see a
task's state: its owner, the workspace that started it, remembered in Redis next to the result and for as
long (`result_expires`). Everyone else gets 404, as for another workspace's code.

Nothing here blocks the event loop: Redis is read and written with the gateway's asyncio client (1 s
timeouts), and Celery's blocking publish runs in a worker thread, bounded by the broker's socket timeouts and
publish retry policy (celeryconfig.py).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio
import structlog
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from app.kit.errors import Unavailable
from app.kit.events import Event
from app.kit.messaging import EVENTS_PUBLISHED

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from celery import Celery

log = structlog.get_logger(__name__)

_OWNER = "qrflow:task-owner:{}"
_STATES = {"PENDING", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED"}


class TaskAccepted(BaseModel):
    task_id: uuid.UUID = Field(description="GET /v1/tasks/{task_id} reports its state.")


class TaskState(BaseModel):
    task_id: uuid.UUID
    state: Literal["PENDING", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED"] = Field(
        description="PENDING until a worker takes it (and for a day after it was accepted, if none did); "
        "PROGRESS while a long task reports how far it got."
    )
    result: dict[str, Any] | None = Field(None, description="What the task returned (SUCCESS only).")
    progress: dict[str, Any] | None = Field(None, description="How far the task got so far (PROGRESS only).")
    error: str | None = Field(None, description="The error's type (FAILURE, RETRY).")
    done_at: datetime | None = None


class TrackedTasks:
    def __init__(self, redis: aioredis.Redis, celery: Celery) -> None:
        self.redis = redis
        self.celery = celery
        expires = celery.conf.result_expires  # seconds, or a timedelta
        self.ttl = int(expires.total_seconds() if hasattr(expires, "total_seconds") else expires)

    async def start(self, event: Event, workspace_id: uuid.UUID) -> uuid.UUID:
        """Publish the event's task with its result kept; its id, once the workspace is remembered as its owner
        (first: a task must never run without one, or its owner could not ask about it)."""
        task_id = uuid.uuid4()
        try:
            await self.redis.set(_OWNER.format(task_id), str(workspace_id), ex=self.ttl)
        except RedisError as exc:
            log.warning("task_owner_not_stored", task=event.task_name, error=repr(exc))
            raise Unavailable("the task queue is unreachable; try again shortly") from None
        try:
            await anyio.to_thread.run_sync(self._send, event, task_id)
        except Exception as exc:  # kombu and redis raise many types; every one means "not published"
            EVENTS_PUBLISHED.labels(event.task_name, "failed").inc()
            log.warning("event_publish_failed", task=event.task_name, error=repr(exc))
            raise Unavailable("the task queue is unreachable; try again shortly") from None
        EVENTS_PUBLISHED.labels(event.task_name, "published").inc()
        return task_id

    def _send(self, event: Event, task_id: uuid.UUID) -> None:
        self.celery.send_task(
            event.task_name, kwargs={"event": event.to_message()}, task_id=str(task_id), ignore_result=False
        )

    async def state(self, task_id: uuid.UUID, workspace_id: uuid.UUID) -> TaskState | None:
        """The task's state, or None when it is not this workspace's (or long forgotten)."""
        try:
            owner = await self.redis.get(_OWNER.format(task_id))
            if owner is None or owner.decode() != str(workspace_id):
                return None
            stored = await self.redis.get(self.celery.backend.get_key_for_task(str(task_id)))
        except RedisError:
            raise Unavailable("the task store is unreachable; try again shortly") from None
        if stored is None:  # not taken by a worker yet
            return TaskState(task_id=task_id, state="PENDING")
        meta = json.loads(stored)  # result_serializer is json (celeryconfig.py)
        state = meta.get("status") if meta.get("status") in _STATES else "PENDING"
        result = meta.get("result")
        done = meta.get("date_done")
        return TaskState(
            task_id=task_id,
            state=state,
            result=result if state == "SUCCESS" and isinstance(result, dict) else None,
            progress=result if state == "PROGRESS" and isinstance(result, dict) else None,
            # The exception's type only: its message can carry internals (hosts, SQL) the client has no use for.
            error=(
                (result or {}).get("exc_type") if state in ("FAILURE", "RETRY") and isinstance(result, dict) else None
            ),
            done_at=_utc(done) if isinstance(done, str) and state in ("SUCCESS", "FAILURE") else None,
        )


def _utc(stamp: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
