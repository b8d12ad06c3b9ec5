"""Publishing events to the broker from the gateway (and from periodic jobs).

Publishing is best effort by design: callers commit their state first, then publish, and a failed
publish is logged and counted, never raised. Whatever a failed publish leaves undone is found again
from the database (e.g. the stale-render republisher). The broker settings bound how long one publish
may block (socket timeouts and the retry policy in celeryconfig.py).

The gateway does not wait for the broker at all: its answer (202) is the same whether the publish
works or not, so `publish_later` hands the event to one background thread and returns. The thread runs
each publish in the context captured when it was queued, so the request id and the trace go along.
"""

from __future__ import annotations

import contextvars
import functools
import queue
import threading
from collections.abc import Callable

import structlog
from celery import Celery
from prometheus_client import Counter

from app.kit.events import Event

log = structlog.get_logger(__name__)

CONFIRM_TIMEOUT_SECONDS = 5

EVENTS_PUBLISHED = Counter(
    "qrflow_events_published_total", "Events published to the broker", ["task", "outcome"]
)


class EventPublisher:
    # Events waiting for the broker; past this (a long broker outage) they are dropped and counted,
    # and the database-driven republishers pick them up later.
    BACKLOG = 10_000

    def __init__(self, celery: Celery) -> None:
        self._celery = celery
        self._backlog: queue.Queue[tuple[contextvars.Context, Event] | None] = queue.Queue(self.BACKLOG)
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    def publish(self, event: Event) -> bool:
        return self._send(event.task_name, {"event": event.to_message()}, event_id=str(event.event_id))

    def publish_many(self, task_name: str, events: list[str]) -> bool:
        """Events of one kind in one message, the task's `events` argument: each event already serialised
        (a JSON string, as the scan spool keeps it), so the publisher neither parses nor rebuilds them.
        The message's repr (logs, Flower) says how many, not what: 1,000 events would cost milliseconds.

        Compressed (zlib): events of one kind repeat their keys, links and user agents, so 1,000 scans
        shrink from ~480 KB on Redis (JSON, then base64) to ~38 KB. Redis holds a worker outage's backlog
        in memory, and the worker's main process handles every byte of a message (decodes it, copies it
        into Redis's unacked hash, pipes it to a pool process): 17-18 µs of its CPU per scan before,
        12-13 after, while the shipper saves on sending about what it spends compressing (bench/ingest.py)."""
        summary = f"{{'events': <{len(events)} events>}}"
        return self._send(
            task_name, {"events": events}, kwargsrepr=summary, compression="zlib", events=len(events)
        )

    def _send(
        self,
        task_name: str,
        kwargs: dict,
        kwargsrepr: str | None = None,
        compression: str | None = None,
        **about: object,
    ) -> bool:
        try:
            # ignore_result: otherwise send_task subscribes to the task's result channel on the result
            # backend, a round trip per publish and, with Redis gone, a reconnect loop of ~20 s.
            # confirm_timeout: on RabbitMQ (publisher confirms) how long a publish waits for the broker to
            # say it stored the message; a broker that accepts the bytes and never confirms (a resource
            # alarm blocks publishers) fails the publish instead of holding it. Redis ignores it.
            self._celery.send_task(
                task_name,
                kwargs=kwargs,
                kwargsrepr=kwargsrepr,
                compression=compression,
                ignore_result=True,
                confirm_timeout=CONFIRM_TIMEOUT_SECONDS,
            )
        except Exception as exc:  # kombu/redis raise many types; every one means "not published"
            EVENTS_PUBLISHED.labels(task_name, "failed").inc()
            log.warning("event_publish_failed", task=task_name, error=repr(exc), **about)
            return False
        EVENTS_PUBLISHED.labels(task_name, "published").inc()
        return True

    def publish_later(self, event: Event) -> None:
        """Queue the event for the background publisher and return at once."""
        with self._thread_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._publish_backlog, name="event-publisher", daemon=True)
                self._thread.start()
        try:
            self._backlog.put_nowait((contextvars.copy_context(), event))
        except queue.Full:
            EVENTS_PUBLISHED.labels(event.task_name, "dropped").inc()
            log.warning("event_backlog_full", task=event.task_name, event_id=str(event.event_id))

    def _publish_backlog(self) -> None:
        while (item := self._backlog.get()) is not None:
            context, event = item
            context.run(self.publish, event)

    def close(self, timeout: float = 5.0) -> None:
        """Publish what is queued (for up to `timeout` seconds) and stop the background thread."""
        with self._thread_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            try:
                self._backlog.put(None, timeout=timeout)
            except queue.Full:
                return
            thread.join(timeout)


def platform_celery() -> Celery:
    """The platform's Celery app, to publish and to read tracked results: the one place the app layer takes
    it from. Imported when first asked for, never the task modules: the gateway and the scan shipper only
    publish."""
    from workers.celery_app import celery_app

    return celery_app


def task_publisher(task_name: str) -> Callable[[list[str]], bool]:
    """`publish_many` of one task on the platform's Celery app: what a process that only publishes (the
    scan shipper) builds for itself."""
    return functools.partial(EventPublisher(platform_celery()).publish_many, task_name)
