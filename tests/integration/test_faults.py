"""Faults lose nothing. Each test injects a real fault: a stopped redis-server, a SIGKILLed worker
process, an unreachable database."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest
from celery import Celery, signals

from app.kit.messaging import EventPublisher
from app.kit.redis_server import RedisServer, find_binary, free_port
from tests.conftest import wait_until_rendered
from tests.decoding import decode_png
from tests.integration.rabbitmq import ON_BOTH_BROKERS
from tests.integration.test_qrcodes_api import created
from tests.integration.worker_processes import Processes, celery_on, render_rows


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
    from app.kit.settings import Settings
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


def wait_for_retry(retried: list[str], task: str, timeout: float = 120) -> None:
    # A wide margin: the scans arrive through the gateway's shipper, and a host busy with other test runs
    # delays both it and the worker (20 s was not enough at a load average of 20).
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


# The platform's processes for the kill tests, with short intervals: beat's republisher runs every second
# and an unclaimed code in no message is lost after 5 s. The time limits stay far above what a code here
# takes (about a second, ten on a host busy with other test runs).
RECOVERY_ENV = {
    "QRFLOW_RENDER_REPUBLISH_INTERVAL_SECONDS": "1",
    "QRFLOW_RENDER_REPUBLISH_AFTER_SECONDS": "5",
    "QRFLOW_TASK_SOFT_TIME_LIMIT_SECONDS": "60",
    "QRFLOW_TASK_TIME_LIMIT_SECONDS": "90",
}


@pytest.mark.e2e
@ON_BOTH_BROKERS
def test_worker_processes_killed_mid_render_lose_no_code(gateway, alice, backend, redis_url, tmp_path, rabbitmq_vhost):
    """A SIGKILLed pool process's render comes back: its message is requeued (acks_late +
    reject_on_worker_lost) or, when the kill loses it (celery#3541, Redis), beat's republisher sees the
    code's claim is dead and publishes it again, within the bound of docs/architecture.md's fault table. No
    code is published again that was not lost: at most one republished render per kill."""
    platform = Processes(backend, redis_url, db=7, tmp_path=tmp_path, rabbitmq=rabbitmq_vhost, **RECOVERY_ENV)
    try:
        worker = platform.worker("qr,default")
        platform.beat()
        platform.wait_for_log("ready.")
        # Big, slow-to-draw codes keep both pool processes busy while we kill them.
        body = {"kind": "text", "data": {"text": "ÿ" * 1000}, "style": {"error": "L", "scale": 12}}
        with gateway_publishing_to(gateway, platform.celery):
            ids = [created(gateway, alice, body)["id"] for _ in range(40)]
        kills = _kill_pool_processes(worker.pid, times=3)
        # The bound: the republisher's interval past a dead claim, a hard time limit (90 s) and its grace
        # (30 s) for a message the worker still holds, and the 40 renders, with a wide margin for a busy host.
        codes = [wait_until_rendered(gateway, alice, code_id, timeout=240) for code_id in ids]
    finally:
        platform.stop()
    assert kills == 3
    assert [c["status"] for c in codes] == ["ready"] * len(ids)
    logged = platform.logs()
    assert "WorkerLostError" in logged or "exited with 'signal 9" in logged, "no task was running when killed"
    assert sum(event["count"] for event in platform.logged_events("renders_republished")) <= kills
    assert all(row["claimed"] is None for row in render_rows(backend, ids).values())
    for code in codes[:3]:
        assert decode_png(gateway.get(code["images"]["png"], headers=alice.headers).content) == [code["content"]]


# A code that costs ten times what a small one does, and more: the largest symbol at the largest scale,
# with a module colour, so the worker also reads the 10,450-pixel PNG back (2.5 s of CPU on the machine the
# tests were written on, where a small code and a pool process's first set-up take 0.3 s).
POISON = {
    "kind": "text",
    "data": {"text": "ÿ" * 1270},
    "style": {"error": "L", "scale": 50, "border": 16, "data_dark": "#202020"},
}


def poison_time_limit(share: float = 1 / 3) -> float:
    """A time limit the poison code reliably runs past and a small code (with a fresh pool process's set-up)
    reliably stays under, on this host as busy as it is now: a third of what the poison takes here. The
    workers of these tests run at the test's own priority (QRFLOW_WORKER_NICE=0), so they see the same."""
    from app.qrcodes.readback import reads_back
    from app.qrcodes.rendering import render_images
    from app.qrcodes.style import Style

    started = time.monotonic()
    images = render_images(POISON["data"]["text"], Style.model_validate(POISON["style"]))
    assert reads_back(images["png"], POISON["data"]["text"])
    return round(max(0.5, (time.monotonic() - started) * share), 1)


@pytest.mark.e2e
def test_a_render_past_its_soft_time_limit_is_tried_3_times_then_failed_with_the_reason(
    gateway, alice, backend, redis_url, tmp_path
):
    """SoftTimeLimitExceeded is a failed attempt: the worker sends the code back at once, and the third one
    makes it `failed` with the reason. (A task can also pass the soft limit before its render claims the
    code, e.g. while a fresh pool process builds its resources on a busy host: then beat's republisher
    finds the unclaimed code in no message, as it would after any lost publish.)"""
    # A fifth: the host's load can drop while the test runs. A task that passes the limit before its render
    # claims the code is not counted, and comes back through beat.
    soft_limit = poison_time_limit(1 / 5)
    limits = {"QRFLOW_TASK_SOFT_TIME_LIMIT_SECONDS": str(soft_limit), "QRFLOW_TASK_TIME_LIMIT_SECONDS": "120"}
    platform = Processes(backend, redis_url, db=10, tmp_path=tmp_path, QRFLOW_WORKER_NICE="0", **RECOVERY_ENV | limits)
    try:
        platform.worker("qr,default", concurrency=1)
        platform.beat()
        with gateway_publishing_to(gateway, platform.celery):
            poison = created(gateway, alice, POISON)
            innocent = created(gateway, alice, {"kind": "text", "data": {"text": "rendered all the same"}})
        failed = wait_until_rendered(gateway, alice, poison["id"], timeout=240)
        ready = wait_until_rendered(gateway, alice, innocent["id"], timeout=60)
    finally:
        platform.stop()
    assert failed["status"] == "failed"
    assert failed["error"].startswith("rendering did not finish in 3 attempts; the last one "), failed["error"]
    assert ready["status"] == "ready"
    assert render_rows(backend, [poison["id"]])[uuid.UUID(poison["id"])]["attempts"] == 3
    attempts = [e for e in platform.logged_events("render_attempt_failed") if e["code_id"] == poison["id"]]
    assert [e["attempt"] for e in attempts] == [1, 2, 3]
    # The soft limit lands in the read-back's C code and is raised when it returns; on a host short of
    # memory the 109-megapixel read-back can raise first (zxing-cpp's TypeError): an attempt all the same.
    assert "exceeded its time budget" in {e["cause"] for e in attempts}


@pytest.mark.e2e
def test_a_backlog_waiting_for_workers_is_not_published_again_and_a_lost_render_is(
    gateway, alice, backend, redis_url, tmp_path
):
    """Issue #14, item 7: codes older than the republisher's threshold that wait in the queue (no render
    worker runs) are left alone, run after run; a code and a batch whose messages never reached the broker
    are published again, once."""
    from app.kit.broker_inventory import RedisInventory
    from tests.integration.batch_helpers import batch_code_ids, post_batch, unpublished_batch

    platform = Processes(backend, redis_url, db=11, tmp_path=tmp_path, **RECOVERY_ENV)
    try:
        with gateway_publishing_to(gateway, platform.celery):
            waiting = [created(gateway, alice, {"kind": "text", "data": {"text": f"waiting {i}"}}) for i in range(30)]
            rows = [{"kind": "text", "data": {"text": f"waiting row {i}"}} for i in range(150)]  # two chunks
            response = post_batch(gateway, alice, {"items": rows})
            assert response.status_code == 202, response.text
        queued = 32  # the gateway publishes from a background thread: wait until they are all there
        deadline = time.monotonic() + 60
        while platform.queue_length() < queued:
            assert time.monotonic() < deadline, f"{platform.queue_length()} of {queued} messages published"
            time.sleep(0.1)
        with gateway_publishing_to(gateway, celery_on(f"redis://127.0.0.1:{free_port()}/0")):
            lost = created(gateway, alice, {"kind": "text", "data": {"text": "never published"}})
        lost_batch = unpublished_batch(gateway, alice, [["text", f"never published row {i}"] for i in range(3)])
        time.sleep(6)  # every one of them is now older than the threshold (5 s)

        platform.worker("default", concurrency=1)  # the republishers' queue; nothing renders
        platform.beat()
        runs = _republisher_runs(platform, at_least=5)
        assert platform.queue_length() == queued + 2
        held = {
            str(code_id)
            for queue in ("qr", "qr_batch")
            for message in RedisInventory(platform.celery).held(queue)
            for code_id in message.kwargs["event"].get("code_ids") or [message.kwargs["event"].get("code_id")]
        }
        in_batches = [*batch_code_ids(backend, response.json()["id"]), *batch_code_ids(backend, lost_batch["id"])]
        assert {c["id"] for c in [*waiting, lost]} | {str(i) for i in in_batches} == held
        assert [e["count"] for e in platform.logged_events("renders_republished")] == [1]
        assert [e["count"] for e in platform.logged_events("batch_renders_republished")] == [3]
        assert runs >= 5

        platform.worker("qr,qr_batch")  # and what waited renders, once
        for code in [*waiting, lost]:
            assert wait_until_rendered(gateway, alice, code["id"], timeout=120)["status"] == "ready"
    finally:
        platform.stop()


def _republisher_runs(platform: Processes, at_least: int, timeout: float = 300) -> int:
    """Wait until both republishers have run `at_least` times (as their tasks' success lines say)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = platform.logs()
        runs = min(
            len(re.findall(rf"Task {re.escape(task)}\[[^\]]+\] succeeded", logs))
            for task in ("qrcodes.republish_stale_renders", "qrcodes.republish_stale_batch_renders")
        )
        if runs >= at_least:
            return runs
        assert time.monotonic() < deadline, f"the republishers ran {runs} times"
        time.sleep(0.5)


def _kill_pool_processes(worker_pid: int, times: int) -> int:
    """SIGKILL a busy pool process `times` times, as the OOM killer would. Busy: the one that used the
    most CPU in the last half second (an idle pool process uses none), judged by CPU time rather than a
    CPU percentage, which a host busy with other work keeps low for every process."""
    parent = psutil.Process(worker_pid)
    killed = 0
    deadline = time.monotonic() + 120
    while killed < times and time.monotonic() < deadline:
        used = _cpu_used(parent.children(), seconds=0.5)
        if used and max(used.values()) > 0.02:  # 4% of a core: a drawing process on a host at a load of 25
            busiest = max(used, key=used.__getitem__)
            try:
                busiest.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:  # it finished and the pool replaced it meanwhile
                continue
            killed += 1
            time.sleep(0.5)  # let the pool replace it
    return killed


def _cpu_used(processes: list[psutil.Process], seconds: float) -> dict[psutil.Process, float]:
    def cpu(process: psutil.Process) -> float | None:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            return None
        return times.user + times.system

    before = {process: cpu(process) for process in processes}
    time.sleep(seconds)
    used = {}
    for process, start in before.items():
        end = cpu(process)
        if start is not None and end is not None:
            used[process] = end - start
    return used


def test_images_left_by_an_interrupted_render_are_swept_when_the_code_is_ready(gateway, alice, backend):
    """A pool process killed mid-render leaves images under keys no row names (PDF and EPS carry their
    creation time, so the next render's keys differ) and perhaps a temporary file: the render that
    completes the code removes them, and a redelivery after it changes nothing."""
    from sqlalchemy import select

    from app.identity.models import Workspace
    from app.kit.db import create_sync_engine, sync_sessionmaker
    from app.kit.storage import LocalImageStore, code_prefix, image_key
    from app.qrcodes.jobs import render_code
    from app.qrcodes.models import QRCode

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


@pytest.mark.parametrize("prefix", ["", "instance-b:"])
def test_the_broker_inventory_reads_waiting_and_taken_messages_under_any_key_prefix(redis_url, prefix):
    """What the republishers read (app/kit/broker_inventory.py), on a real Redis: the queue's list and kombu's
    unacked hash, with the transport's global_keyprefix (instances sharing one Redis) or without."""
    import redis

    from app.kit.broker_inventory import RedisInventory
    from app.qrcodes.events import RenderRequested

    broker_url = redis_url.rsplit("/", 1)[0] + "/14"
    with redis.Redis.from_url(broker_url) as client:
        client.flushdb()
    celery = celery_on(broker_url)
    celery.conf.broker_transport_options = {**celery.conf.broker_transport_options, "global_keyprefix": prefix}
    ids = [uuid.uuid4() for _ in range(3)]
    for code_id in ids:
        assert EventPublisher(celery).publish(RenderRequested(code_id=code_id))
    with celery.connection_for_read() as connection:
        taken = connection.default_channel.basic_get("qr", no_ack=False)  # as a worker takes one
        assert taken is not None
        held = list(RedisInventory(celery).held("qr"))
    assert sorted((m.kwargs["event"]["code_id"], m.taken_at is None) for m in held) == sorted(
        (str(code_id), str(code_id) != taken.decode()[1]["event"]["code_id"]) for code_id in ids
    )
    assert {m.task for m in held} == {RenderRequested.task_name}
