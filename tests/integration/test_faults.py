"""Faults lose nothing. Each test injects a real fault: a stopped redis-server, a SIGKILLed worker
process, an unreachable database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from celery import Celery, signals

from app.messaging import EventPublisher
from app.redis_server import RedisServer, find_binary, free_port
from tests.conftest import wait_until_rendered
from tests.decoding import decode_png
from tests.integration.test_qrcodes_api import created


@contextmanager
def gateway_publishing_to(gateway, celery: Celery) -> Iterator[None]:
    state = gateway.app.state
    original, state.publisher = state.publisher, EventPublisher(celery)
    try:
        yield
    finally:
        state.publisher.close()
        state.publisher = original


def isolated_broker(backend, redis_url: str, db: int) -> tuple[Celery, dict[str, str]]:
    """A broker database the in-process test worker does not read, and the environment for a
    `qrflow worker` subprocess on it and on the backend's database."""
    broker_url = redis_url.rsplit("/", 1)[0] + f"/{db}"
    celery = celery_on(broker_url)
    celery.control.purge()
    env = {
        **os.environ,
        "QRFLOW_REDIS_URL": broker_url,
        "QRFLOW_DATABASE_URL": backend.settings.database_url,
        "QRFLOW_DATA_DIR": str(backend.settings.data_dir),
        "QRFLOW_LOG_FORMAT": "json",
    }
    return celery, env


def celery_on(broker_url: str) -> Celery:
    """The real configuration, on another broker."""
    app = Celery("qrflow-fault-test")
    app.config_from_object("celeryconfig")
    app.conf.broker_url = app.conf.result_backend = broker_url
    return app


def test_broker_down_at_publish_time_leaves_no_code_pending(gateway, alice, tmp_path):
    """The gateway commits, fails to publish, still answers 202; the beat task republishes it later."""
    broker = RedisServer(find_binary()[0], free_port(), tmp_path / "redis").start()
    broker.stop()
    with gateway_publishing_to(gateway, celery_on(broker.url)):
        code = created(gateway, alice, {"kind": "text", "data": {"text": "published while the broker was down"}})
    time.sleep(1)
    assert gateway.get(f"/v1/qrcodes/{code['id']}", headers=alice.headers).json()["status"] == "pending"

    # What beat runs every minute, with the test setting of 5 s for "stale".
    from workers.celery_app import celery_app

    deadline = time.monotonic() + 30
    while gateway.get(f"/v1/qrcodes/{code['id']}", headers=alice.headers).json()["status"] == "pending":
        assert time.monotonic() < deadline, "the stale render was never republished"
        celery_app.send_task("qrcodes.republish_stale_renders")
        time.sleep(1)
    ready = wait_until_rendered(gateway, alice, code["id"])
    assert ready["status"] == "ready"
    assert decode_png(gateway.get(ready["images"]["png"], headers=alice.headers).content) == [ready["content"]]


@contextmanager
def worker_database_down(backend) -> Iterator[list[str]]:
    """The in-process worker's database unreachable for the block; yields the names of the tasks that
    retried meanwhile (as they are seen)."""
    from app.settings import Settings
    from workers.runtime import build_runtime, runtime, use_runtime

    retried: list[str] = []
    on_retry = lambda request, **_: retried.append(request.task)  # noqa: E731
    signals.task_retry.connect(on_retry, weak=False)
    dead = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/gone",
        data_dir=backend.settings.data_dir,
        redis_url=backend.settings.redis_url,
    )
    use_runtime(build_runtime(dead))
    try:
        yield retried
    finally:
        use_runtime(build_runtime(backend.settings))
        signals.task_retry.disconnect(on_retry)
    assert runtime().settings.database_url == backend.settings.database_url


def wait_for_retry(retried: list[str], task: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while task not in retried:
        assert time.monotonic() < deadline, f"{task} never retried"
        time.sleep(0.1)


def test_database_down_in_the_worker_retries_until_it_is_back(gateway, alice, backend):
    with worker_database_down(backend) as retried:
        code = created(gateway, alice, {"kind": "text", "data": {"text": "rendered after the outage"}})
        wait_for_retry(retried, "qrcodes.render")
        assert gateway.get(f"/v1/qrcodes/{code['id']}", headers=alice.headers).json()["status"] == "pending"
    assert wait_until_rendered(gateway, alice, code["id"], timeout=60)["status"] == "ready"


@pytest.mark.e2e
def test_worker_processes_killed_mid_render_lose_no_code(gateway, alice, backend, redis_url, tmp_path):
    """acks_late + reject_on_worker_lost: a SIGKILLed pool process's task goes back to the queue."""
    celery, env = isolated_broker(backend, redis_url, db=7)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "-Q", "qr", "-c", "2"], env=env, stdout=log, stderr=log
    )
    try:
        # Big, slow-to-draw codes keep both pool processes busy while we kill them.
        body = {"kind": "text", "data": {"text": "ÿ" * 1000}, "style": {"error": "L", "scale": 12}}
        with gateway_publishing_to(gateway, celery):
            ids = [created(gateway, alice, body)["id"] for _ in range(40)]
        kills = _kill_pool_processes(worker.pid, times=3)
        codes = [wait_until_rendered(gateway, alice, code_id, timeout=120) for code_id in ids]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        log.close()
    assert kills == 3
    assert [c["status"] for c in codes] == ["ready"] * len(ids)
    logged = Path(tmp_path / "worker.log").read_text()
    assert "WorkerLostError" in logged or "exited with 'signal 9" in logged, "no task was running when killed"
    for code in codes[:3]:
        assert decode_png(gateway.get(code["images"]["png"], headers=alice.headers).content) == [code["content"]]


def _kill_pool_processes(worker_pid: int, times: int) -> int:
    """SIGKILL a busy pool process `times` times, as the OOM killer would."""
    parent = psutil.Process(worker_pid)
    killed = 0
    deadline = time.monotonic() + 60
    while killed < times and time.monotonic() < deadline:
        for child in parent.children():
            try:
                if child.cpu_percent(interval=0.1) > 20:  # busy: drawing a code right now
                    child.send_signal(signal.SIGKILL)
                    killed += 1
                    time.sleep(0.5)  # let the pool replace it
                    break
            except psutil.NoSuchProcess:  # the pool replaced it meanwhile
                continue
    return killed


def test_images_left_by_an_interrupted_render_are_swept_when_the_code_is_ready(gateway, alice, backend):
    """A pool process killed mid-render leaves images under keys no row names (PDF and EPS carry their
    creation time, so the next render's keys differ) and perhaps a temporary file: the render that
    completes the code removes them, and a redelivery after it changes nothing."""
    from sqlalchemy import select

    from app.db import create_sync_engine, sync_sessionmaker
    from app.identity.models import Workspace
    from app.qrcodes.jobs import render_code
    from app.qrcodes.models import QRCode
    from app.storage import LocalImageStore, code_prefix, image_key

    engine = create_sync_engine(backend.settings)
    sessions = sync_sessionmaker(engine)
    store = LocalImageStore(backend.settings.images_dir)
    with sessions.begin() as session:  # pending, and published nowhere: only this test renders it
        workspace = session.scalar(select(Workspace).where(Workspace.name == alice.workspace))
        style = {"error": "M", "scale": 4, "border": 4, "dark": "#000000", "light": "#ffffff", "micro": False}
        code = QRCode(workspace_id=workspace.id, kind="text", data={"text": "swept"}, content="swept", style=style)
        session.add(code)
    directory = backend.settings.images_dir / code_prefix(code.workspace_id, code.id)
    store.put(image_key(code.workspace_id, code.id, "0" * 32, "pdf"), b"%PDF from the killed attempt")
    killed_writer_temporary = directory / ".tmp-killed"
    killed_writer_temporary.write_bytes(b"half an image")
    os.utime(killed_writer_temporary, (time.time() - 3600, time.time() - 3600))
    live_writer_temporary = directory / ".tmp-live"
    live_writer_temporary.write_bytes(b"being written right now")

    try:
        assert render_code(sessions, store, code.id) == "ready"
        with sessions() as session:
            recorded = session.get(QRCode, code.id).images
        expected = {directory / f"{etag}.{fmt}" for fmt, etag in recorded.items()} | {live_writer_temporary}
        assert set(directory.iterdir()) == expected and len(recorded) == 4

        assert render_code(sessions, store, code.id) == "already ready"
        assert set(directory.iterdir()) == expected
    finally:
        engine.dispose()
