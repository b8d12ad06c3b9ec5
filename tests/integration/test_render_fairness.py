"""Issue #13, item 6: one workspace's batch does not starve another's renders, and what a render may cost
is bounded before it is accepted.

The fairness test runs the workers `qrflow up` runs for rendering (app/launcher.py), as real processes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select, update

from app.kit.db import utcnow
from app.launcher import worker_arguments
from app.qrcodes.batches.models import BatchItem
from app.qrcodes.models import QRCode, Status
from tests.conftest import wait_until_rendered
from tests.integration.test_faults import gateway_publishing_to, isolated_broker
from tests.integration.test_qrcodes_api import create, created
from tests.integration.test_safety import client_for

URL = {"kind": "url", "data": {"url": "https://example.com/campaign"}}
SINGLE_CODE_READY_WITHIN = 2.0


@contextmanager
def render_workers(env: dict[str, str], log_path) -> Iterator[None]:
    log = log_path.open("wb")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for queue in ("qr", "qr_batch"):  # one at a time: a failure to start the second stops the first
            command = [sys.executable, "-m", "app.cli", "worker", *worker_arguments(queue)]
            workers.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
        yield
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
        log.close()


def post_items(client, caller, items: list[dict]):
    return client.post(
        "/v1/batches", content=json.dumps({"items": items}, ensure_ascii=False).encode(),
        headers={**caller.headers, "Content-Type": "application/json"},
    )


def test_a_single_code_is_ready_within_2_s_while_another_workspaces_5000_row_batch_renders(
    gateway, alice, bob, backend, redis_url, tmp_path
):
    from workers.runtime import runtime

    celery, env = isolated_broker(backend, redis_url, db=9)
    with render_workers(env, tmp_path / "workers.log"), gateway_publishing_to(gateway, celery):
        # Both render workers up: a single code renders.
        wait_until_rendered(gateway, bob, created(gateway, bob, URL)["id"], timeout=90)
        items = [{"kind": "text", "data": {"text": f"row {i} " + "x" * 200}, "style": {"scale": 12}}
                 for i in range(5000)]
        response = post_items(gateway, alice, items)
        assert response.status_code == 202, response.text
        batch_id = response.json()["id"]
        try:
            deadline = time.monotonic() + 120
            while gateway.get(f"/v1/batches/{batch_id}", headers=alice.headers).json()["done"] < 50:
                assert time.monotonic() < deadline, "the batch does not render"
                time.sleep(0.2)
            for _ in range(3):
                started = time.monotonic()
                code = wait_until_rendered(gateway, bob, created(gateway, bob, URL)["id"], timeout=30)
                waited = time.monotonic() - started
                assert code["status"] == "ready"
                assert waited < SINGLE_CODE_READY_WITHIN, f"workspace B's code took {waited:.1f} s"
            progress = gateway.get(f"/v1/batches/{batch_id}", headers=alice.headers).json()
            assert progress["pending"] > 0, "the batch was no longer rendering: the test proved nothing"
        finally:
            # What is left of the batch is not rendered by anyone else's worker later.
            with runtime().sessions.begin() as session:
                ids = select(BatchItem.code_id).where(BatchItem.batch_id == uuid.UUID(batch_id))
                left = update(QRCode).where(QRCode.id.in_(ids), QRCode.status == Status.PENDING)
                session.execute(left.values(deleted_at=utcnow()))


# --- the render cost limit -------------------------------------------------------------------------------

# Level H, 1,273 bytes (version 40), scale 50, border 16: a 10,450-pixel square (issue #13).
HUGE_STYLE = {"error": "H", "scale": 50, "border": 16}
HUGE_TEXT = "ÿ" * 1273


def test_a_code_over_the_render_cost_limit_is_422_naming_the_cost_and_the_limit(gateway, alice):
    # Plain, it is ~1 s of work: accepted. With module colours (~9 s) it is not.
    assert create(gateway, alice, {"kind": "text", "data": {"text": HUGE_TEXT}, "style": HUGE_STYLE}).status_code == 202
    coloured = {**HUGE_STYLE, "data_dark": "#1a237e"}
    response = create(gateway, alice, {"kind": "text", "data": {"text": HUGE_TEXT}, "style": coloured})
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["field"] == "style.scale"
    assert "s of a worker's CPU; at most 4 s" in error["message"]


def test_the_render_cost_limits_are_settings(backend, alice):
    with client_for(backend, max_render_cost=0.5) as client:
        response = create(client, alice, {"kind": "text", "data": {"text": HUGE_TEXT}, "style": HUGE_STYLE})
        assert response.status_code == 422 and "at most 0.5 s" in response.text
    with client_for(backend, max_batch_render_cost=5) as client:
        items = [{"kind": "text", "data": {"text": f"row {i}"}} for i in range(1000)]
        response = post_items(client, alice, items)
        assert response.status_code == 422, response.text
        assert "s of a worker's CPU; at most 5 s per batch" in response.json()["message"]


@pytest.mark.parametrize("partial", [False, True])
def test_a_batch_row_over_the_limit_is_a_row_error_and_a_costly_batch_is_refused_whole(gateway, alice, partial):
    coloured = {**HUGE_STYLE, "data_dark": "#1a237e"}
    items = [
        {"kind": "text", "data": {"text": "fine"}},
        {"kind": "text", "data": {"text": HUGE_TEXT}, "style": coloured},
    ]
    response = gateway.post(
        f"/v1/batches?partial={str(partial).lower()}", content=json.dumps({"items": items}),
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    if partial:
        assert response.status_code == 202, response.text
        body = response.json()
        assert (body["total"], body["rejected"]) == (1, 1)
        assert body["errors"][0]["row"] == 2 and body["errors"][0]["type"] == "render_cost"
    else:
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0] | {"message": ""} == {
            "row": 2, "field": "style.scale", "type": "render_cost", "message": ""
        }
    # The batch: 5,000 such rows, plain, ~1 s each: refused whole, nothing created.
    many = [{"kind": "text", "data": {"text": HUGE_TEXT}, "style": HUGE_STYLE}] * 5000
    response = post_items(gateway, alice, many)
    assert response.status_code == 422, response.text
    assert "at most 1,800 s per batch" in response.json()["message"]


# --- memory per render -----------------------------------------------------------------------------------


def test_each_render_process_has_its_address_space_bounded(backend, redis_url, tmp_path):
    import psutil

    _, env = isolated_broker(backend, redis_url, db=10)
    env["QRFLOW_WORKER_MAX_MEMORY_MB"] = "1536"
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", *worker_arguments("qr")], env=env, stdout=log, stderr=log
    )
    try:
        # Each pool process logs once it is bounded; they start one after another, so wait for all of them.
        deadline = time.monotonic() + 90
        while True:
            pool = psutil.Process(worker.pid).children()
            bounded = (tmp_path / "worker.log").read_text().count("pool_process_memory_limited")
            if pool and bounded >= len(pool):
                break
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        for process in pool:
            assert process.rlimit(psutil.RLIMIT_AS) == (1536 * 2**20, 1536 * 2**20)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        log.close()
