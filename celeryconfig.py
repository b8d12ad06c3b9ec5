"""Celery's configuration: routing, delivery guarantees and the limits that keep faults bounded.

Read by workers/celery_app.py (`config_from_object`). Each setting says why it has its value.
"""

from kombu import Exchange, Queue
from kombu.transport import TRANSPORT_ALIASES

from app.kit.settings import RABBITMQ_SCHEMES, get_settings

_settings = get_settings()

# A Redis broker (redis://, rediss://) is used through kombu's Redis transport changed so that a broker
# restart loses no message and a worker's unacknowledged messages are back in their queues once it
# reconnects (workers/redis_transport.py). Registered under kombu's own names rather than set as
# broker_transport, so the broker's URL still reads redis:// (Flower's broker page goes by it).
TRANSPORT_ALIASES.update({scheme: "workers.redis_transport:Transport" for scheme in ("redis", "rediss")})

# The broker is Redis (the default) or RabbitMQ (QRFLOW_BROKER_URL=amqp://...); results always go to Redis.
# Task code, routing and limits are the same on both; what differs is in broker_settings() below.
broker_url = _settings.celery_broker_url
result_backend = _settings.redis_url

# Queues by kind of work, so a flood of one cannot starve another, and each can get the pool it needs:
# qr is CPU-bound (prefork, one process per core), scans is I/O on batches, analytics is beat's.
# A batch's chunks have a queue of their own (qr_batch), consumed by its own worker: a single code (qr)
# never waits behind another workspace's 5,000-row batch, whose chunks would otherwise fill the FIFO and
# the pool's prefetch ahead of it (tests/integration/test_render_fairness.py).
QUEUES = ("default", "qr", "qr_batch", "scans", "analytics", "webhooks")
task_default_queue = "default"
task_routes = {
    "qrcodes.render": {"queue": "qr"},
    "qrcodes.render_preview": {"queue": "qr"},  # the dashboard's live preview (app/qrcodes/preview.py)
    "qrcodes.render_batch": {"queue": "qr_batch"},  # a batch's chunks (app/qrcodes/batches/jobs.py)
    "scans.*": {"queue": "scans"},
    "analytics.*": {"queue": "analytics"},
    # Webhook deliveries wait on other people's servers: a queue of their own, on a threads pool.
    "webhooks.*": {"queue": "webhooks"},
    # Everything else (housekeeping such as qrcodes.republish_stale_renders) goes to default.
}

# JSON only: events are Pydantic models dumped to JSON; pickle from a broker is remote code execution.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]

# A message is acknowledged after its task finished, not when it was received, so a worker that dies
# mid-task leaves it on the broker; and when a pool process is killed (OOM, SIGKILL) the message is
# requeued instead of acknowledged. Every task is idempotent, so a redelivery is harmless. Neither is a
# guarantee on Redis: a kill can lose the message with the process (celery#3541). A render claims its
# code, and the republisher sends again what a dead claim leaves behind (app/qrcodes/recovery.py).
task_acks_late = True
task_reject_on_worker_lost = True

# Redis redelivers a message not acknowledged within visibility_timeout, even if a worker still runs it:
# it must exceed the longest task (time limit below) and the longest retry countdown (2 min), which a
# worker holds unacknowledged. 15 minutes is also how long a message waits after its whole worker
# died. The result backend uses the same transport, so it gets the same options.
_redis_transport_options = {
    "visibility_timeout": 900,
    # Without socket timeouts a publish blocks forever on a Redis that is gone (kombu#1519).
    "socket_timeout": 5,
    "socket_connect_timeout": 2,
    "retry_on_timeout": True,
}

# How many times RabbitMQ delivers one message before it gives up on it (x-delivery-limit): each worker
# that dies holding the message (or its connection lost) is one delivery. Poison is bounded per code by the
# render claims (3 starts, app/qrcodes/claims.py); this is the broker's own backstop for any task, generous
# enough that a few worker restarts never reach it. A message past it goes to the dead_letters queue, kept
# for an operator (docs/operations.md), never silently dropped: a scans message carries 1,000 scans.
RABBITMQ_DELIVERY_LIMIT = 20
DEAD_LETTERS = "dead_letters"


def broker_settings(broker: str) -> dict[str, object]:
    """The settings that depend on which broker `broker` (a URL) is: its queues and transport options."""
    if not broker.startswith(RABBITMQ_SCHEMES):
        return {
            "task_queues": tuple(Queue(name) for name in QUEUES),
            "broker_transport_options": _redis_transport_options,
        }
    # RabbitMQ. Quorum queues: replicated, durable, and they count deliveries, so a message that keeps
    # killing its consumer ends (x-delivery-limit) instead of Redis's re-delivery after visibility_timeout;
    # RabbitMQ redelivers a message the moment the connection of the worker holding it closes, so no
    # timeout is needed for a dead worker. Celery (>= 5.5) sees the quorum queues (worker_detect_quorum_queues,
    # on by default) and then (1) uses per-consumer prefetch, as quorum queues refuse a global QoS, and
    # (2) sends countdowns (retries, webhook back-off) through its native delayed delivery exchanges
    # instead of holding them unacknowledged in the worker: which needs topic exchanges, not direct ones.
    # RabbitMQ's consumer_timeout (30 min by default) far exceeds any task's hard time limit, so a running
    # task's delivery is never taken back. What the republishers can see of RabbitMQ is less than of Redis
    # (a count and the workers' prefetch, not every message): app/kit/broker_inventory.py.
    arguments = {
        "x-queue-type": "quorum",
        "x-delivery-limit": RABBITMQ_DELIVERY_LIMIT,
        "x-dead-letter-exchange": DEAD_LETTERS,
    }
    return {
        "task_queues": tuple(
            Queue(name, Exchange(name, type="topic"), routing_key=name, queue_arguments=arguments) for name in QUEUES
        ),
        "task_default_exchange_type": "topic",
        # Declares every queue before Celery binds them to its delayed delivery exchanges (workers/consumer.py).
        "worker_consumer": "workers.consumer:Consumer",
        "broker_transport_options": {
            # Publisher confirms: a publish returns once RabbitMQ has stored the message (in the quorum
            # queue's majority), so "published" means what the spool and the republishers take it to mean.
            # How long a publish waits for its confirm: app/kit/messaging.py (confirm_timeout).
            "confirm_publish": True,
            # A send blocks at most this long on a broker that stopped reading (a resource alarm, a stalled
            # host) instead of forever; connecting is bounded by broker_connection_timeout.
            "write_timeout": 5,
        },
        # A connection attempt to a RabbitMQ that is gone waits at most this (Celery's default is 4 s);
        # with the publish retry policy below, a publish gives up within about 7 s.
        "broker_connection_timeout": 2,
    }


globals().update(broker_settings(broker_url))
result_backend_transport_options = _redis_transport_options
redis_socket_timeout = 5
redis_socket_connect_timeout = 2
redis_retry_on_timeout = True
redis_backend_health_check_interval = 30

# A publish retries briefly, then fails: the gateway must answer within about a second when the broker
# is down, and whatever it could not publish is recovered from the database (see app/kit/messaging.py).
task_publish_retry = True
task_publish_retry_policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.4}
broker_connection_retry_on_startup = True
broker_connection_max_retries = None  # workers keep trying while the broker is away
# When the broker connection drops, a running task is stopped (its pool process terminated) rather than
# left to finish: its acknowledgement could not reach the broker anyway, and its message is put back in its
# queue as soon as the worker reconnects (workers/redis_transport.py on Redis; RabbitMQ requeues it the
# moment the connection closes), so it runs once more instead of twice at the same time. Every task is
# idempotent (a scans batch is keyed on its event ids), so the rerun stores nothing twice.
worker_cancel_long_running_tasks_on_connection_loss = True

# Small prefetch: with acks_late, prefetched messages are held by one worker; a few per process keep
# the pool busy between round trips without hoarding a backlog another worker could take.
worker_prefetch_multiplier = 4

# Results are kept only for tasks a client asks about (they opt in with ignore_result=False), and expire.
task_ignore_result = True
result_expires = 24 * 3600
result_extended = True

# A render takes milliseconds; a task stuck for a minute is a bug, and the hard limit frees its process
# (30 s and 60 s by default; settings.task_*time_limit_seconds). Past the soft limit a task gets
# SoftTimeLimitExceeded and a render counts a failed attempt and goes back to the broker; past the hard
# one the pool process is SIGKILLed and Celery acknowledges the message (acks_on_failure_or_timeout), so
# the render's dead claim is what brings it back (app/qrcodes/recovery.py), a bounded number of times.
task_soft_time_limit = _settings.task_soft_time_limit_seconds or None
task_time_limit = _settings.task_time_limit_seconds

# Events for Flower: sent, started, succeeded, failed, retried.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True

worker_hijack_root_logger = False  # logging goes through structlog (workers/signals.py)
enable_utc = True
timezone = "UTC"
