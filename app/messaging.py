"""Publishing events to the broker from the gateway (and from periodic jobs).

Publishing is best effort by design: callers commit their state first, then publish, and a failed
publish is logged and counted, never raised. Whatever a failed publish leaves undone is found again
from the database (e.g. the stale-render republisher). The broker settings bound how long one publish
may block (socket timeouts and the retry policy in celeryconfig.py).
"""

from __future__ import annotations

import anyio
import structlog
from celery import Celery
from prometheus_client import Counter

from app.events import Event

log = structlog.get_logger(__name__)

EVENTS_PUBLISHED = Counter(
    "qrflow_events_published_total", "Events published to the broker", ["task", "outcome"]
)


class EventPublisher:
    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    def publish(self, event: Event) -> bool:
        try:
            # ignore_result: otherwise send_task subscribes to the task's result channel on the result
            # backend, a round trip per publish and, with Redis gone, a reconnect loop of ~20 s.
            self._celery.send_task(event.task_name, kwargs={"event": event.to_message()}, ignore_result=True)
        except Exception as exc:  # kombu/redis raise many types; every one means "not published"
            EVENTS_PUBLISHED.labels(event.task_name, "failed").inc()
            log.warning(
                "event_publish_failed", task=event.task_name, event_id=str(event.event_id), error=repr(exc)
            )
            return False
        EVENTS_PUBLISHED.labels(event.task_name, "published").inc()
        return True

    async def publish_async(self, event: Event) -> bool:
        # kombu is blocking; a worker thread keeps a slow broker from stalling the event loop.
        return await anyio.to_thread.run_sync(self.publish, event)
