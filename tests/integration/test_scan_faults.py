"""No answered scan is lost or counted twice, whatever fails. Each test injects a real fault into real
processes: `qrflow api` and `qrflow worker` subprocesses on a redis-server of the test's own, which the
test stops; a gateway or a worker pool process SIGKILLed; a database the worker cannot reach."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
import redis
from sqlalchemy import func, select

from app.kit.db import create_sync_engine
from app.kit.redis_server import RedisServer, find_binary, free_port
from app.scans.events import ScanRecorded
from app.scans.models import Scan
from tests.integration.rabbitmq import ON_BOTH_BROKERS, RabbitNode
from tests.integration.test_faults import (
    wait_for_retry,
    worker_database_down,
)
from tests.integration.test_redirect import IPHONE, dynamic_code, scan, wait_for_scans


class Platform:
    """A broker of its own, and gateway and worker processes on it and on the backend's database. On RabbitMQ,
    a RabbitMQ node of its own is the broker and a redis-server of its own keeps the rest (link cache, caps);
    on Redis, one redis-server is both. `broker` is the broker's server either way: stop() and start()."""

    def __init__(self, backend, tmp_path: Path, broker: str = "redis") -> None:
        self.tmp_path = tmp_path
        self.redis = RedisServer(find_binary()[0], free_port(), tmp_path / "redis").start()
        self.broker = RabbitNode(tmp_path / "rabbitmq").start() if broker == "rabbitmq" else self.redis
        self.port = free_port()
        self.env = {
            **os.environ,
            "QRFLOW_REDIS_URL": self.redis.url,
            "QRFLOW_BROKER_URL": self.broker.url if broker == "rabbitmq" else "",
            "QRFLOW_DATABASE_URL": backend.settings.database_url,
            "QRFLOW_DATA_DIR": str(tmp_path / "data"),
            "QRFLOW_API_PORT": str(self.port),
            "QRFLOW_LOG_FORMAT": "json",
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.engine = create_sync_engine(backend.settings)

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"{args[0]}-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args], env={**self.env, **env}, stdout=log, stderr=log
        )
        self.processes.append(process)
        return process

    def start_gateway(self, **env: str) -> subprocess.Popen[bytes]:
        process = self.start("api", **env)
        # Start-up is not what these tests are about: a wide margin for a host busy with other test runs
        # (a gateway took 38 s to import and bind at a load average of 18 on 2 cores).
        deadline = time.monotonic() + 120
        while not self._answers(f"{self.url}/healthz"):
            assert process.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.1)
        return process

    def start_worker(self) -> subprocess.Popen[bytes]:
        return self.start("worker", "-Q", "scans", "-c", "1")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def stored(self, link_slug: str) -> tuple[int, int]:
        """(rows, distinct event ids) stored for a link."""
        from app.links.models import Link

        with self.engine.connect() as connection:
            rows, distinct = connection.execute(
                select(func.count(), func.count(func.distinct(Scan.event_id)))
                .join(Link, Link.id == Scan.link_id)
                .where(Link.slug == link_slug)
            ).one()
        return rows, distinct

    def wait_stored(self, slug: str, expected: int, timeout: float = 240) -> tuple[int, int]:
        # A wide margin: a worker started on a host busy with other test runs took 2 minutes to connect
        # and 10 s for its first batch (a load average of 17 on 2 cores, at nice 10).
        deadline = time.monotonic() + timeout
        while self.stored(slug)[0] < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # and not one more after a while
        return self.stored(slug)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.broker.stop()
        self.redis.stop()
        self.engine.dispose()

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture
def platform(backend, tmp_path, broker) -> Iterator[Platform]:
    platform = Platform(backend, tmp_path, broker)
    yield platform
    platform.stop()


@ON_BOTH_BROKERS
def test_broker_down_redirects_keep_answering_and_scans_arrive_when_it_is_back(platform, alice):
    platform.start_gateway()
    platform.start_worker()
    with platform.client() as client:
        code = dynamic_code(client, alice)
        for _ in range(20):
            assert scan(client, code["slug"]).status_code == 302
        assert platform.wait_stored(code["slug"], 20) == (20, 20)

        platform.broker.stop()
        for _ in range(200):
            assert scan(client, code["slug"]).status_code == 302
        assert _metric(client, "qrflow_scan_spool_depth") == 200
        deadline = time.monotonic() + 120
        while _metric(client, "qrflow_scan_publish_failures_total") < 1:
            assert time.monotonic() < deadline, "the shipper never noticed the broker was gone"
            time.sleep(0.2)

        platform.broker.start()
        assert platform.wait_stored(code["slug"], 220) == (220, 220)
        assert wait_for_scans(client, alice, code["id"], 220)["scans_total"] == 220
        assert _metric(client, "qrflow_scan_spool_depth") == 0


def test_a_gateway_killed_after_answering_loses_no_scan(platform, alice):
    # Scans wait in the spool for up to 10 s: the kill finds them there.
    first = platform.start_gateway(QRFLOW_SCAN_FLUSH_INTERVAL_MS="10000")
    platform.start_worker()
    with platform.client() as client:
        code = dynamic_code(client, alice)
        for _ in range(50):
            assert scan(client, code["slug"]).status_code == 302
    shipper = _shipper(first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait()
    # Its shipper sees it gone and exits: the dead gateway's spool is now whoever adopts it. (Within a
    # second when the host is idle; the margin is for a host busy with other test runs.)
    shipper.wait(60)
    spooled = b"".join(p.read_bytes() for p in (platform.tmp_path / "data" / "spool").glob("*/seg-*.jsonl"))
    assert spooled.count(b"\n") == 50
    assert platform.stored(code["slug"]) == (0, 0)

    platform.start_gateway()  # adopts the dead process's spool
    assert platform.wait_stored(code["slug"], 50) == (50, 50)
    with platform.client() as client:
        assert _metric(client, "qrflow_scans_published_total") == 50
        assert _metric(client, "qrflow_scan_spool_depth") == 0


def test_a_shipper_killed_is_restarted_and_loses_no_scan(platform, alice):
    gateway = platform.start_gateway(QRFLOW_SCAN_FLUSH_INTERVAL_MS="100")
    platform.start_worker()
    with platform.client() as client:
        code = dynamic_code(client, alice)
        for _ in range(30):
            assert scan(client, code["slug"]).status_code == 302
        shipper = _shipper(gateway.pid)
        shipper.send_signal(signal.SIGKILL)
        shipper.wait(5)
        for _ in range(30):
            assert scan(client, code["slug"]).status_code == 302
        assert platform.wait_stored(code["slug"], 60) == (60, 60)
        restarted = _shipper(gateway.pid)
        assert restarted.pid != shipper.pid
        assert _metric(client, "qrflow_scan_spool_depth") == 0


def test_with_no_worker_scans_wait_in_the_broker_compressed_and_are_all_stored_once_one_starts(platform, alice):
    platform.start_gateway(QRFLOW_SCAN_BATCH_MAX_EVENTS="100")
    with platform.client() as client:
        code = dynamic_code(client, alice)
        for n in range(250):
            assert scan(client, code["slug"], **{"user-agent": f"{IPHONE} #{n}"}).status_code == 302
        deadline = time.monotonic() + 120
        while _metric(client, "qrflow_scans_published_total") < 250:
            assert time.monotonic() < deadline, "the shipper did not publish the scans"
            time.sleep(0.2)
    # No worker yet: the scans queue holds them, a message per batch of up to 100, each compressed
    # (kombu's zlib), which is what keeps a long outage's backlog small in Redis's memory.
    broker = redis.Redis.from_url(platform.broker.url)
    messages = [json.loads(raw) for raw in broker.lrange("scans", 0, -1)]
    broker.close()
    assert len(messages) >= 3
    events, compressed, uncompressed = [], 0, 0
    for message in messages:
        assert message["headers"]["task"] == ScanRecorded.task_name
        assert message["headers"]["compression"] == "application/x-gzip"
        body = base64.b64decode(message["body"])
        _, kwargs, _ = json.loads(zlib.decompress(body))
        assert len(kwargs["events"]) <= 100
        events += [ScanRecorded.model_validate_json(event) for event in kwargs["events"]]
        compressed, uncompressed = compressed + len(body), uncompressed + len(json.dumps(kwargs["events"]))
    # A batch closed by the flush timer may hold a single scan, which compresses little; together they do.
    assert compressed < uncompressed / 4
    assert len({event.event_id for event in events}) == 250
    assert {event.user_agent for event in events} == {f"{IPHONE} #{n}" for n in range(250)}

    platform.start_worker()
    assert platform.wait_stored(code["slug"], 250) == (250, 250)


def test_a_worker_killed_mid_batch_stores_every_scan_exactly_once(platform, alice, backend):
    platform.start_gateway(QRFLOW_SCAN_FLUSH_INTERVAL_MS="10000", QRFLOW_SCAN_BATCH_MAX_EVENTS="2000")
    with platform.client() as client:
        code = dynamic_code(client, alice)
        for n in range(6000):
            response = client.get(f"/r/{code['slug']}", headers={"user-agent": f"{IPHONE} Build/{uuid.uuid4()}"})
            assert response.status_code == 302, n
    # The scans table locked: a batch, once started, cannot finish, so the kill lands mid-batch however fast
    # the host stores one (2,000 scans take well under a second on a quiet machine).
    with _scans_table_locked(platform.engine, backend):
        worker = platform.start_worker()
        # A pool process killed while the worker first starts takes the whole worker down ("Could not start
        # worker processes"): the kill is for a process storing a batch, so it waits for a batch received.
        deadline = time.monotonic() + 120
        while "Task scans.record[" not in _worker_logs(platform):
            assert time.monotonic() < deadline, "the scans worker never received a batch"
            time.sleep(0.05)
        time.sleep(2)  # for the pool process to take the batch up; it cannot finish it meanwhile
        (pool_process,) = psutil.Process(worker.pid).children()
        pool_process.send_signal(signal.SIGKILL)
        while "WorkerLostError" not in _worker_logs(platform):
            assert time.monotonic() < deadline, "no batch was running when killed"
            time.sleep(0.1)
    assert platform.wait_stored(code["slug"], 6000, timeout=360) == (6000, 6000)
    # QRFLOW_WORKER_NICE (10): on a shared host the redirect goes first; the pool, restarted too, inherits it.
    main = psutil.Process(worker.pid)
    assert {process.nice() for process in [main, *main.children()]} == {10}


def test_a_batch_stuck_past_the_hard_time_limit_is_stored_by_a_later_try(platform, alice, backend):
    """Past the hard time limit Celery kills the pool process and acknowledges the message: the worker's
    main process publishes the batch again first (tasks/scans.py), its try counted in the message."""
    platform.start_gateway()
    platform.start(
        "worker", "-Q", "scans", "-c", "1", QRFLOW_TASK_SOFT_TIME_LIMIT_SECONDS="0", QRFLOW_TASK_TIME_LIMIT_SECONDS="10"
    )
    with platform.client() as client:
        code = dynamic_code(client, alice)
        with _scans_table_locked(platform.engine, backend):  # the batch's insert waits, in C, past the limit
            for _ in range(5):
                assert scan(client, code["slug"]).status_code == 302
            deadline = time.monotonic() + 240
            while "scan_batch_timed_out" not in _worker_logs(platform):
                assert time.monotonic() < deadline, _worker_logs(platform)[-3000:]
                time.sleep(0.2)
    assert platform.wait_stored(code["slug"], 5) == (5, 5)
    assert "Hard time limit (10" in _worker_logs(platform)


def test_a_batch_running_when_the_broker_restarts_is_stored_without_waiting_for_the_visibility_timeout(
    platform, alice, backend
):
    """The broker (its redis-server, persisting) stops and starts while a worker runs a batch: the batch is
    stored, once, well within kombu's visibility timeout (15 min), not lost with the connection."""
    platform.start_gateway()
    worker = platform.start_worker()
    broker = redis.Redis.from_url(platform.broker.url)
    with platform.client() as client:
        code = dynamic_code(client, alice)
        with _scans_table_locked(platform.engine, backend):  # the batch's insert waits while the broker goes
            for _ in range(5):
                assert scan(client, code["slug"]).status_code == 302
            _wait_for(lambda: _a_batch_waits_on_the_lock(platform, backend, worker), platform)
            platform.broker.stop()
            _wait_for(lambda: "Connection to broker lost" in _worker_logs(platform), platform)
            platform.broker.start()
            _wait_for(lambda: _worker_logs(platform).count("Connected to ") >= 2, platform)
        assert platform.wait_stored(code["slug"], 5) == (5, 5)
        assert wait_for_scans(client, alice, code["id"], 5)["scans_total"] == 5
    _wait_for(lambda: not broker.hlen("unacked"), platform)  # acknowledged: nothing left to come back later
    broker.close()
    assert worker.poll() is None, "the worker's main process exited on the reconnect"


def _a_batch_waits_on_the_lock(platform: Platform, backend, worker: subprocess.Popen[bytes]) -> bool:
    """A pool process of `worker` runs a batch, its insert waiting on _scans_table_locked."""
    if backend.name == "sqlite":  # the pool process opens the database for its first batch
        database = backend.settings.database_url.split("///", 1)[1]
        pool = psutil.Process(worker.pid).children()
        return any(Path(f.path) == Path(database).resolve() for p in pool for f in p.open_files())
    with platform.engine.connect() as connection:
        waiting = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return waiting.scalar_one() > 0


def _wait_for(condition, platform: Platform, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, _worker_logs(platform)[-3000:]
        time.sleep(0.2)


def _worker_logs(platform: Platform) -> str:
    return "".join(p.read_text() for p in platform.tmp_path.glob("worker-*.log"))


@contextmanager
def _scans_table_locked(engine, backend) -> Iterator[None]:
    with engine.connect() as connection:
        if backend.name == "sqlite":
            connection.exec_driver_sql("BEGIN EXCLUSIVE")
        else:
            connection.exec_driver_sql("BEGIN")
            connection.exec_driver_sql("LOCK TABLE scans IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            connection.exec_driver_sql("ROLLBACK")


def test_database_down_in_the_worker_retries_until_it_is_back(gateway, alice, backend):
    code = dynamic_code(gateway, alice)
    with worker_database_down(backend) as retried:
        for _ in range(5):
            assert scan(gateway, code["slug"]).status_code == 302
        wait_for_retry(retried, "scans.record")
    assert wait_for_scans(gateway, alice, code["id"], 5, timeout=60)["scans_total"] == 5


def _shipper(gateway_pid: int) -> psutil.Process:
    """The gateway's scan shipper (multiprocessing also starts its resource tracker beside it)."""
    (shipper,) = [p for p in psutil.Process(gateway_pid).children() if "spawn_main" in " ".join(p.cmdline())]
    return shipper


def _metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")
