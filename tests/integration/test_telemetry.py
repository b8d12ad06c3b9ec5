"""Observability: one trace from the HTTP request into the Celery task, trace ids in log lines, the
gateway's queue-depth and publish metrics, Flower's worker metrics, and the Prometheus config that
scrapes them.

Spans are read with an InMemorySpanExporter fed by a processor added (once) to the global tracer
provider that create_app installs. The in-process test worker runs in a thread of this process, so it
sees both sides. The processor records only while a test holds the `spans` fixture; between tests it
does nothing.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import structlog
import yaml
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from app.kit import telemetry
from app.kit.logging import configure_logging
from app.kit.redis_server import free_port
from app.kit.settings import Settings
from tests.conftest import wait_until_rendered
from tests.integration.test_faults import celery_on, gateway_publishing_to, isolated_broker
from tests.integration.test_qrcodes_api import created

ROOT = Path(__file__).resolve().parents[2]
TEXT_CODE = {"kind": "text", "data": {"text": "traced from the request into the task"}}


class _Recorder(SpanProcessor):
    exporter: InMemorySpanExporter | None = None
    installed_on: TracerProvider | None = None

    def on_end(self, span: ReadableSpan) -> None:
        exporter = self.exporter
        if exporter is not None:
            exporter.export((span,))


_recorder = _Recorder()


@pytest.fixture
def spans(gateway) -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "create_app installs the SDK's tracer provider"
    if _recorder.installed_on is not provider:  # the SDK cannot remove a processor: add ours once
        provider.add_span_processor(_recorder)
        _recorder.installed_on = provider
    _recorder.exporter = exporter = InMemorySpanExporter()
    try:
        yield exporter
    finally:
        _recorder.exporter = None


def _wait_for(find: Callable[[], object], timeout: float = 20, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        found = find()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _request_span(exporter: InMemorySpanExporter, name: str = "POST /v1/qrcodes") -> ReadableSpan:
    found = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    span = found[0]
    # A request starts its trace. If not, a span was left current in the thread that drives the
    # TestClient (e.g. a publish that failed outside a copied context) and every request joins it.
    assert span.kind is trace.SpanKind.SERVER and span.parent is None, (span.kind, span.parent)
    return span


def _ancestors(span: ReadableSpan, exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    """The span's parents up to the root; fails on a parent that was never exported (a broken chain)."""
    by_id = {s.context.span_id: s for s in exporter.get_finished_spans()}
    chain = []
    while span.parent is not None:
        parent = by_id.get(span.parent.span_id)
        assert parent is not None, f"the parent of {span.name!r} was never exported: the trace is broken there"
        chain.append(parent)
        span = parent
    return chain


# --- traces ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("publisher_has_the_task", [False, True], ids=["published-by-name", "registered-task"])
def test_the_task_a_request_publishes_runs_in_the_request_trace(
    gateway, alice, spans, monkeypatch, publisher_has_the_task
):
    """POST /v1/qrcodes → publish (from anyio's worker thread) → the worker's run span, one trace.

    The gateway's process never imports task modules, so it publishes qrcodes.render by name only; this
    process (with the test worker) has the task registered. Both must give an unbroken chain."""
    if not publisher_has_the_task:
        from opentelemetry.instrumentation.celery import utils

        lookup = utils.retrieve_task_from_sender
        monkeypatch.setattr(
            utils,
            "retrieve_task_from_sender",
            lambda kwargs: None if kwargs.get("sender") == "qrcodes.render" else lookup(kwargs),
        )
    code = created(gateway, alice, TEXT_CODE)
    wait_until_rendered(gateway, alice, code["id"])

    request = _request_span(spans)
    run = _wait_for(
        lambda: [
            s
            for s in spans.get_finished_spans()
            if s.name == "run/qrcodes.render" and s.context.trace_id == request.context.trace_id
        ],
        what="the task's span in the request's trace",
    )[0]
    assert run.kind is trace.SpanKind.CONSUMER
    chain = _ancestors(run, spans)
    assert [(s.name, s.kind) for s in chain] == [
        ("apply_async/qrcodes.render", trace.SpanKind.PRODUCER),
        ("POST /v1/qrcodes", trace.SpanKind.SERVER),
    ]
    assert chain[-1] is request
    # The publish span is the request span's child: the context crossed anyio.to_thread.run_sync.
    assert chain[0].parent.span_id == request.context.span_id


GATEWAY_PROCESS_PROBE = """
import json, sys
from celery import signals
from opentelemetry import trace
from app.gateway.main import create_app

create_app()
from workers.celery_app import celery_app

sent = {}
signals.after_task_publish.connect(lambda headers=None, **_: sent.update(headers or {}), weak=False)
with trace.get_tracer("probe").start_as_current_span("a request") as span:
    celery_app.send_task("qrcodes.render", kwargs={"event": {}}, queue=sys.argv[1], ignore_result=True)
print(json.dumps({
    "traceparent": sent.get("traceparent"),
    "trace_id": format(span.get_span_context().trace_id, "032x"),
    "task_modules_loaded": sorted(m for m in sys.modules if m.split(".")[0] == "tasks"),
}))
"""


def test_the_gateway_process_on_its_own_puts_the_trace_context_into_the_message(redis_url):
    """In this test process the in-process worker has instrumented Celery too; a process that only runs
    create_app, as `qrflow api` does, must do the publishing side itself."""
    import redis

    queue = f"qrflow-probe-{uuid.uuid4().hex[:8]}"  # no worker reads it
    try:
        out = subprocess.run(
            [sys.executable, "-c", GATEWAY_PROCESS_PROBE, queue], capture_output=True, text=True, check=True, timeout=60
        )
    finally:
        client = redis.Redis.from_url(redis_url)
        client.delete(queue, f"_kombu.binding.{queue}")
        client.close()
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["task_modules_loaded"] == []  # so qrcodes.render is published by name only
    assert probe["traceparent"] and probe["traceparent"].split("-")[1] == probe["trace_id"]


def test_health_and_metrics_requests_are_not_traced(gateway, spans):
    gateway.get("/healthz")
    gateway.get("/metrics")
    gateway.get("/v1/qrcodes")  # 401, traced
    names = [s.name for s in spans.get_finished_spans() if s.kind is trace.SpanKind.SERVER]
    assert names == ["GET /v1/qrcodes"]


@pytest.mark.e2e
def test_a_prefork_worker_process_exports_its_task_span_into_the_request_trace(
    gateway, alice, backend, redis_url, spans, tmp_path
):
    """A real `qrflow worker` (prefork): tracing is set up in the pool process, after the fork, and the
    exporter is the one OTEL_TRACES_EXPORTER names; its log lines carry the trace id."""
    celery, env = isolated_broker(backend, redis_url, db=8)
    env |= {
        "QRFLOW_LOG_LEVEL": "INFO",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "qrflow-worker-under-test",
    }
    out_path, err_path = tmp_path / "worker.out", tmp_path / "worker.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "-Q", "qr", "-c", "1"], env=env, stdout=out, stderr=err
        )
        try:
            with gateway_publishing_to(gateway, celery):
                code = created(gateway, alice, TEXT_CODE)
            assert wait_until_rendered(gateway, alice, code["id"], timeout=60)["status"] == "ready"
            request = _request_span(spans)
            trace_hex = f"{request.context.trace_id:032x}"

            def exported_run_span() -> dict | None:
                for line in out_path.read_text().splitlines():
                    if line.startswith("{") and '"run/qrcodes.render"' in line:
                        span = json.loads(line)
                        if span["context"]["trace_id"] == f"0x{trace_hex}":
                            return span
                return None

            run = _wait_for(exported_run_span, what="the worker's console exporter to print the task span")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
    [publish] = [s for s in spans.get_finished_spans() if s.name == "apply_async/qrcodes.render"]
    assert publish.parent.span_id == request.context.span_id
    assert run["parent_id"] == f"0x{publish.context.span_id:016x}"
    assert run["kind"] == "SpanKind.CONSUMER"
    assert run["resource"]["attributes"]["service.name"] == "qrflow-worker-under-test"
    lines = [json.loads(line) for line in err_path.read_text().splitlines() if line.startswith("{")]
    task_lines = [line for line in lines if line.get("trace_id") == trace_hex]
    assert any("succeeded" in line["event"] for line in task_lines), "Celery's own task line has the trace id"
    assert all(line["span_id"] == run["context"]["span_id"][2:] for line in task_lines)


# --- logs --------------------------------------------------------------------------------------------


@pytest.fixture
def json_log(monkeypatch) -> Iterator[io.StringIO]:
    """configure_logging as a service does it, into a buffer; the previous logging set-up afterwards."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging(Settings(log_format="json", log_level="INFO"), service="test")
    try:
        yield stream
    finally:
        structlog.configure(**saved_structlog)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_every_log_line_carries_the_current_trace_and_span_id(json_log):
    tracer = TracerProvider().get_tracer("qrflow.tests")
    with tracer.start_as_current_span("a unit of work") as span:
        structlog.get_logger("qrflow.tests").info("from_structlog")
        logging.getLogger("celery.tests").warning("from the standard library")
    structlog.get_logger("qrflow.tests").info("outside_any_span")

    lines = {line["event"]: line for line in map(json.loads, json_log.getvalue().splitlines())}
    ids = {"trace_id": f"{span.get_span_context().trace_id:032x}", "span_id": f"{span.get_span_context().span_id:016x}"}
    for event in ("from_structlog", "from the standard library"):
        assert {k: lines[event].get(k) for k in ids} == ids, lines[event]
    assert "trace_id" not in lines["outside_any_span"]


# --- configuration -----------------------------------------------------------------------------------


def test_the_exporter_and_service_name_come_from_the_otel_variables(monkeypatch):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    for name in (
        "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_PROTOCOL"
    ):
        monkeypatch.delenv(name, raising=False)
    assert telemetry.span_exporters_from_env() == []  # none by default
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert [type(e) for e in telemetry.span_exporters_from_env()] == [ConsoleSpanExporter]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,console")
    assert [type(e) for e in telemetry.span_exporters_from_env()] == [OTLPSpanExporter, ConsoleSpanExporter]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ValueError, match="HTTP/protobuf"):
        telemetry.span_exporters_from_env()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with pytest.raises(ValueError, match="none, console, otlp"):
        telemetry.span_exporters_from_env()

    assert telemetry._resource("qrflow-worker").attributes["service.name"] == "qrflow-worker"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes,deployment.environment=eu")
    assert telemetry._resource("qrflow-worker").attributes["service.name"] == "from-attributes"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "render-eu")
    resource = telemetry._resource("qrflow-worker")
    assert resource.attributes["service.name"] == "render-eu"
    assert resource.attributes["deployment.environment"] == "eu"


def test_trace_ids_do_not_depend_on_the_random_module(gateway):
    import random

    provider = trace.get_tracer_provider()
    assert isinstance(provider.id_generator, telemetry.SystemRandomIdGenerator)
    ids, saved = set(), random.getstate()
    try:
        for _ in range(2):
            random.seed(0)  # as Hypothesis does before every example
            state = random.getstate()
            with provider.get_tracer("qrflow.tests").start_as_current_span("seeded") as span:
                ids.add(span.get_span_context().trace_id)
            assert random.getstate() == state
    finally:
        random.setstate(saved)
    assert len(ids) == 2


# --- metrics -----------------------------------------------------------------------------------------


def _samples(text: str, name: str) -> dict[tuple, float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_metrics_report_every_queue_depth_including_priority_lists(gateway, redis_url):
    import redis

    from workers.celery_app import celery_app

    def depths() -> dict[str, float]:
        text = gateway.get("/metrics").text
        assert _samples(text, "qrflow_queue_depth_up") == {(): 1.0}
        return {dict(labels)["queue"]: value for labels, value in _samples(text, "qrflow_queue_depth").items()}

    before = depths()
    assert set(before) == {"qr", "qr_batch", "scans", "analytics", "default", "webhooks"}
    # The session's test worker does not consume analytics (tests that need it start their own worker
    # and stop it): the messages stay, one of them in a priority list.
    name = f"analytics.qrflow_test_{uuid.uuid4().hex[:8]}"
    for priority in (None, None, 9):
        celery_app.send_task(name, queue="analytics", priority=priority, ignore_result=True)
    try:
        assert depths()["analytics"] == before["analytics"] + 3
    finally:
        client = redis.Redis.from_url(redis_url)
        client.delete("analytics", "analytics\x06\x169")
        client.close()


def test_queue_depth_is_absent_not_zero_when_redis_does_not_answer():
    collector = telemetry.QueueDepthCollector(f"redis://127.0.0.1:{free_port()}/0", queues=["qr"])
    started = time.monotonic()
    text = telemetry.metrics_payload(collector).decode()
    assert time.monotonic() - started < 2
    assert _samples(text, "qrflow_queue_depth_up") == {(): 0.0}
    assert _samples(text, "qrflow_queue_depth") == {}
    collector.close()


def test_a_failed_publish_is_counted_on_the_gateway_metrics(gateway, alice):
    failed = (("outcome", "failed"), ("task", "qrcodes.render"))

    def count() -> float:
        return _samples(gateway.get("/metrics").text, "qrflow_events_published_total").get(failed, 0.0)

    before = count()
    with gateway_publishing_to(gateway, celery_on(f"redis://127.0.0.1:{free_port()}/0")):
        created(gateway, alice, {"kind": "text", "data": {"text": "published to a broker that is not there"}})
    assert count() == before + 1


@pytest.mark.e2e
def test_flower_serves_the_worker_task_metrics_prometheus_scrapes(gateway, alice, backend, tmp_path):
    """The worker metrics endpoint (deploy/prometheus.yml's qrflow-workers job) is Flower's /metrics: task
    counts by outcome (succeeded, failed, retried, ...) and runtimes, from the events every worker process
    sends, so prefork pools need nothing of their own."""
    if backend.name != "sqlite":
        pytest.skip("Flower never touches the database: once is enough")
    from workers.celery_app import celery_app

    port, password = free_port(), uuid.uuid4().hex
    env = {
        **os.environ,
        "QRFLOW_FLOWER_PORT": str(port),
        "QRFLOW_FLOWER_PASSWORD": password,
        "QRFLOW_DATA_DIR": str(tmp_path),
        "QRFLOW_LOG_FORMAT": "json",
    }
    with (tmp_path / "flower.log").open("wb") as log:
        flower = subprocess.Popen([sys.executable, "-m", "app.cli", "flower"], env=env, stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}/metrics"

            def scrape() -> str | None:
                try:
                    response = httpx.get(url, auth=("admin", password), timeout=2)
                except httpx.HTTPError:
                    return None
                return response.text if response.status_code == 200 else None

            _wait_for(scrape, timeout=60, what="Flower to serve /metrics")

            def task_metrics() -> str | None:
                # Flower only counts the events it receives after it has connected: keep sending.
                created(gateway, alice, TEXT_CODE)
                celery_app.send_task("qrcodes.render", kwargs={"event": {"bad": "event"}}, ignore_result=True)
                time.sleep(0.5)
                text = scrape() or ""
                events = {
                    (dict(labels)["task"], dict(labels)["type"])
                    for labels in _samples(text, "flower_events_total")
                }
                wanted = {("qrcodes.render", "task-succeeded"), ("qrcodes.render", "task-failed")}
                return text if wanted <= events else None

            text = _wait_for(task_metrics, timeout=60, what="Flower to count succeeded and failed renders")
        finally:
            flower.send_signal(signal.SIGTERM)
            flower.wait(30)
    runtimes = _samples(text, "flower_task_runtime_seconds_count")
    assert any(dict(labels)["task"] == "qrcodes.render" and value >= 1 for labels, value in runtimes.items())


# --- deployment --------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_gateway_and_flower_as_compose_runs_them():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    gateway_job, workers_job = jobs["qrflow-gateway"], jobs["qrflow-workers"]
    assert gateway_job.get("metrics_path", "/metrics") == "/metrics"
    assert gateway_job["static_configs"][0]["targets"] == ["api:8000"]
    assert services["api"]["environment"]["QRFLOW_API_PORT"] == "8000"
    assert workers_job.get("metrics_path", "/metrics") == "/metrics"
    assert workers_job["static_configs"][0]["targets"] == ["flower:5555"]
    assert services["flower"]["environment"]["QRFLOW_FLOWER_PORT"] == "5555"
    assert services["flower"]["environment"]["QRFLOW_FLOWER_USER"] == "${QRFLOW_FLOWER_USER:-admin}"
    assert workers_job["basic_auth"]["username"] == "admin"

    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    secret = workers_job["basic_auth"]["password_file"].removeprefix("/run/secrets/")
    assert secret in prometheus["secrets"]
    assert compose["secrets"][secret] == {"environment": "QRFLOW_FLOWER_PASSWORD"}
    # The gateway's /metrics asks for QRFLOW_METRICS_TOKEN in production: Prometheus sends it.
    assert gateway_job["authorization"]["type"] == "Bearer"
    token = gateway_job["authorization"]["credentials_file"].removeprefix("/run/secrets/")
    assert token in prometheus["secrets"]
    assert compose["secrets"][token] == {"environment": "QRFLOW_METRICS_TOKEN"}
    assert "healthcheck" in prometheus
