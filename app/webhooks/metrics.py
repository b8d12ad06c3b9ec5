"""Webhook metrics, kept in Redis so that every worker process adds to one figure, and served by the
gateway's /metrics (the workers serve none): deliveries by result, attempt latency, and what beat's
sweeper last saw (dead deliveries, disabled endpoints, outbox lag)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from app.kit.settings import get_settings

RESULTS = "qrflow:webhooks:results"
LATENCY = "qrflow:webhooks:latency"
STATE = "qrflow:webhooks:state"
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=1, socket_connect_timeout=1)
    return _client


def count_deliveries(attempts: list[tuple[str, float | None, float | None]]) -> None:
    """Attempts' (result, duration, lag) in one round trip; lag, from the event's recording, is given for
    delivered ones."""
    try:
        with _redis().pipeline(transaction=False) as pipe:
            for result, seconds, lag in attempts:
                pipe.hincrby(RESULTS, result, 1)
                if lag is not None:
                    pipe.hset(STATE, "last_delivered_lag_seconds", lag)
                if seconds is not None:
                    for bound in BUCKETS:
                        if seconds <= bound:
                            pipe.hincrby(LATENCY, f"le:{bound}", 1)
                    pipe.hincrby(LATENCY, "count", 1)
                    pipe.hincrbyfloat(LATENCY, "sum", seconds)
            pipe.execute()
    except RedisError:
        pass  # a metric is not worth failing a delivery for


def record_state(dead: int, disabled: int, outbox_lag: float) -> None:
    try:
        _redis().hset(STATE, mapping={"dead": dead, "disabled": disabled, "outbox_lag_seconds": outbox_lag})
    except RedisError:
        pass


class WebhookMetricsCollector(Collector):
    def __init__(self, redis_url: str) -> None:
        self._client = redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def describe(self) -> Iterable[object]:
        return []

    def collect(self) -> Iterator[object]:
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.hgetall(RESULTS)
                pipe.hgetall(LATENCY)
                pipe.hgetall(STATE)
                results, latency, state = pipe.execute()
        except RedisError:
            return
        deliveries = CounterMetricFamily("qrflow_webhook_attempts", "Webhook attempts by result", labels=["result"])
        for result, count in sorted(results.items()):
            deliveries.add_metric([result.decode()], int(count))
        yield deliveries
        counts = {key.decode(): float(value) for key, value in latency.items()}
        yield HistogramMetricFamily(
            "qrflow_webhook_attempt_seconds",
            "Duration of webhook attempts (connect to response read)",
            buckets=[(str(bound), counts.get(f"le:{bound}", 0)) for bound in BUCKETS]
            + [("+Inf", counts.get("count", 0))],
            sum_value=counts.get("sum", 0),
        )
        figures = {key.decode(): float(value) for key, value in state.items()}
        for name, help_text in (
            ("dead", "Dead webhook deliveries (every attempt failed), as beat's sweeper last counted"),
            ("disabled", "Disabled webhook endpoints"),
            ("outbox_lag_seconds", "Age of the oldest webhook delivery that is due and not yet sent"),
            ("last_delivered_lag_seconds", "Event recorded to delivered, of the latest delivery"),
        ):
            gauge = GaugeMetricFamily(f"qrflow_webhook_{name}", help_text)
            gauge.add_metric([], figures.get(name, 0))
            yield gauge
