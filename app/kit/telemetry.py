"""Traces (OpenTelemetry) from the gateway's request into the Celery task (app/kit/logging.py puts their
ids in every log line), and the queue depths the gateway's /metrics reports.

Tracing is set up per process: the gateway in create_app, workers in workers/signals.py (in each prefork
pool process after the fork, never in the parent: the batch exporter's thread and its connections must
not be shared across a fork). The SDK always records spans, so every log line of a request and of the
tasks it caused carries the same trace_id even when nothing exports them; the exporter is chosen with the
standard variables:

    OTEL_TRACES_EXPORTER   none (default) | console (one JSON line per span on stdout) | otlp (OTLP over
                           HTTP/protobuf, to OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, default localhost:4318)
    OTEL_SERVICE_NAME      default qrflow-gateway, qrflow-worker
    OTEL_TRACES_SAMPLER[_ARG], OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS, OTEL_SDK_DISABLED, ...
                           read by the SDK itself.

Trace context travels from the gateway to the worker in the task message's headers (`traceparent`),
put there by opentelemetry-instrumentation-celery on the publishing side. The gateway publishes from a
background thread that runs each publish in a copy of the request's contextvars (app/kit/messaging.py), so
the request's span is the current span when the message is published.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from app.kit.settings import Settings

# --- traces ------------------------------------------------------------------------------------------

SUPPORTED_EXPORTERS = ("none", "console", "otlp")
_configure_lock = threading.Lock()


def configure_tracing(default_service_name: str) -> TracerProvider:
    """Install the process's tracer provider, once; a provider installed before (a test, or the
    `opentelemetry-instrument` agent) is used as it is."""
    with _configure_lock:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            return current
        provider = TracerProvider(
            resource=_resource(default_service_name), id_generator=SystemRandomIdGenerator()
        )
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true":
            for exporter in span_exporters_from_env():
                provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        return provider


class SystemRandomIdGenerator(IdGenerator):
    """Trace and span ids from the OS's random source. The SDK's default draws them from the `random`
    module's shared generator, which anything may seed (Hypothesis does, per example: every request of
    a property test then got the same trace id) and whose draws change its state under anyone who
    relies on a seed. Costs a microsecond per id."""

    def generate_span_id(self) -> int:
        while not (span_id := secrets.randbits(64)):  # 0 is the invalid id
            pass
        return span_id

    def generate_trace_id(self) -> int:
        while not (trace_id := secrets.randbits(128)):
            pass
        return trace_id

    def is_trace_id_random(self) -> bool:
        return True


def _resource(default_service_name: str) -> Resource:
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; ours is only the fallback.
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service_name}))
    return resource


def span_exporters_from_env() -> list[SpanExporter]:
    """OTEL_TRACES_EXPORTER, comma-separated. An unknown value fails start-up, like any invalid setting:
    a typo must not silently drop every trace."""
    names = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",") if n.strip()]
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "none":
            continue
        if name == "console":
            exporters.append(ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + "\n"))
        elif name in ("otlp", "otlp_proto_http"):
            protocol = (
                os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf"
            )
            if protocol != "http/protobuf":
                raise ValueError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: qrflow ships the OTLP HTTP/protobuf exporter "
                    "only (port 4318); gRPC would add grpcio to every image"
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: qrflow supports {', '.join(SUPPORTED_EXPORTERS)}")
    return exporters


def import_tracing_modules() -> None:
    """Import what configure_tracing and instrument_celery will use, and nothing more: no provider, no
    thread, no connection. A prefork parent does this once, so that each pool process it forks (again
    after every crash or recycling) sets tracing up in milliseconds instead of importing it all anew."""
    import opentelemetry.instrumentation.celery  # noqa: F401

    if "otlp" in os.environ.get("OTEL_TRACES_EXPORTER", "").lower():
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401


def flush_traces(timeout_seconds: float = 2.0) -> None:
    """Export what the batch processor still holds. Prefork pool processes leave with os._exit, which
    skips the SDK's atexit shutdown: without this their last spans would be lost."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(timeout_millis=int(timeout_seconds * 1000))


# The gateway's own endpoints that Prometheus and the orchestrator poll: a trace each would be noise.
# /r/: the redirect is served in front of FastAPI (app/gateway/redirect.py) and traced by nothing.
DEFAULT_EXCLUDED_URLS = "/healthz$,/readyz$,/metrics$,/r/"


def instrument_gateway(app: object) -> None:
    """The gateway: a span per request (the outermost middleware, so the access log line has its ids),
    the publishing side of Celery (trace context into the message headers), trace ids in log lines."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    configure_tracing("qrflow-gateway")
    FastAPIInstrumentor.instrument_app(
        app,  # type: ignore[arg-type]
        excluded_urls=os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", DEFAULT_EXCLUDED_URLS),
        # One span per request, not three: the ASGI send/receive spans say nothing a request span does not.
        exclude_spans=["receive", "send"],
    )
    instrument_celery()


def instrument_celery() -> None:
    """Both sides of Celery: publishing (a PRODUCER span `apply_async/<task>`, its context injected into
    the message headers) and running (a CONSUMER span `run/<task>`, its parent extracted from them).
    Idempotent.

    What the instrumentation (0.66b2) does that matters here:
    - A task published by name only (`send_task`; the gateway never imports task modules) is not in the
      publisher's registry: its PRODUCER span is ended as soon as it has been injected, so in the
      gateway's traces it marks the publish but does not time the broker round trip (the request span
      does). The chain request → publish → task run stays whole; tests/integration/test_telemetry.py
      checks it both ways.
    - A publish that raises never gets its after_task_publish: the instrumentation leaves its span
      unended and current in the publishing thread's context. The gateway publishes in a copy of the
      request's context (anyio.to_thread), which is discarded; in a worker the task's end resets the
      context. Beat, which would keep such a span current for ever, is therefore not instrumented: the
      tasks it publishes start their own traces in the worker.
    """
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    instrumentor = CeleryInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


# --- logs --------------------------------------------------------------------------------------------


# --- metrics -----------------------------------------------------------------------------------------

# Worker-side task metrics (counts by outcome, runtimes, failures, retries) are Flower's /metrics, not an
# exporter in the workers. Flower builds them from the task events every worker process already sends
# (celeryconfig: worker_send_task_events, for its UI), so they are right under prefork with no code in
# the workers, no PROMETHEUS_MULTIPROC_DIR to share and clean between pool processes, and one scrape
# target however many worker containers run. The price: the counters live in Flower (reset when it
# restarts, which rate() handles; events sent while it is down are not counted), so run exactly one.
# Queue depth is not an event: the gateway reports it, below.

# kombu's Redis transport keeps a queue in one list per priority step: `name` for the default priority,
# `name\x06\x16{3,6,9}` for the others (kombu.transport.redis: Channel.sep, PRIORITY_STEPS, _size).
_KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
_KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)


def _default_queues() -> list[str]:
    import celeryconfig

    return list(celeryconfig.QUEUES)


class QueueDepthCollector(Collector):
    """qrflow_queue_depth{queue}: messages waiting in each Celery queue, read from the broker at scrape time
    (LLEN of Redis's lists; on RabbitMQ, a passive declare of each queue, see RabbitMQQueueDepthCollector).

    Only messages not yet taken by a worker: those a worker has reserved (prefetched, running) are in
    kombu's `unacked` hash, and Flower's metrics count them per worker. Short socket timeouts bound a
    scrape when the broker is slow or gone; then qrflow_queue_depth_up is 0 and the depths are absent (not
    0, which would read as "the queues are empty")."""

    def __init__(self, redis_url: str, queues: Sequence[str] | None = None, timeout_seconds: float = 0.5) -> None:
        import redis

        self.queues = list(queues) if queues is not None else _default_queues()
        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return list(self._families())

    def _families(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "qrflow_queue_depth", "Messages waiting in a Celery queue (LLEN of its Redis lists)", labels=["queue"]
        )
        yield GaugeMetricFamily("qrflow_queue_depth_up", "1 if Redis answered the queue-depth query of this scrape")

    def collect(self) -> Iterable[GaugeMetricFamily]:
        import redis

        depth, up = self._families()
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for queue in self.queues:
                    for step in _KOMBU_PRIORITY_STEPS:
                        pipe.llen(f"{queue}{_KOMBU_PRIORITY_SEPARATOR}{step}" if step else queue)
                lengths = pipe.execute()
        except (redis.RedisError, OSError):
            up.add_metric([], 0)
            return [up]
        steps = len(_KOMBU_PRIORITY_STEPS)
        for i, queue in enumerate(self.queues):
            depth.add_metric([queue], sum(lengths[i * steps : (i + 1) * steps]))
        up.add_metric([], 1)
        return [depth, up]

    def close(self) -> None:
        self._redis.close()


class RabbitMQQueueDepthCollector(QueueDepthCollector):
    """The same metrics from RabbitMQ: each queue's ready messages, by a passive declare on a connection of
    the scrape's own (the AMQP protocol, no management plugin). A queue no one declared yet waits for nothing."""

    def __init__(self, broker_url: str, queues: Sequence[str] | None = None, timeout_seconds: float = 0.5) -> None:
        self.queues = list(queues) if queues is not None else _default_queues()
        self._broker_url = broker_url
        self._timeout = timeout_seconds

    def collect(self) -> Iterable[GaugeMetricFamily]:
        from kombu import Connection

        depth, up = self._families()
        timeouts = {"read_timeout": self._timeout, "write_timeout": self._timeout}
        broker = Connection(self._broker_url, connect_timeout=self._timeout, transport_options=timeouts)
        try:
            with broker:
                for queue in self.queues:
                    depth.add_metric([queue], self._waiting(broker, queue))
        except (OSError, *broker.connection_errors):
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [depth, up]

    @staticmethod
    def _waiting(broker: object, queue: str) -> int:
        channel = broker.channel()
        try:
            return channel.queue_declare(queue, passive=True)[1]
        except broker.channel_errors:  # 404 closes the channel, not the connection
            return 0
        finally:
            if channel.is_open:
                channel.close()

    def close(self) -> None:
        pass


def queue_depth_collector(settings: Settings) -> QueueDepthCollector:
    """The queue depths of the settings' broker."""
    if settings.broker_is_rabbitmq:
        return RabbitMQQueueDepthCollector(settings.celery_broker_url)
    return QueueDepthCollector(settings.celery_broker_url)


def metrics_payload(*collectors: Collector) -> bytes:
    """The process's metrics (the global registry) and these collectors'. Blocking (the collectors may
    ask Redis): the gateway calls it in a worker thread."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(REGISTRY) + generate_latest(registry)
