"""Faults lose no batch code and duplicate none: the broker down when the gateway publishes, a chunk too
long for its time limit, worker processes SIGKILLed mid-chunk."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.decoding import decode_png
from tests.integration.batch_helpers import (
    Recorder,
    batch_code_ids,
    csv_body,
    post_batch,
    read_archive,
    unpublished_batch,
    wait_until_finished,
)
from tests.integration.test_faults import (
    _kill_pool_processes,
    gateway_publishing_to,
    isolated_broker,
)


def test_broker_down_at_publish_time_the_republisher_completes_the_batch(gateway, alice, backend):
    from app.qrcodes import jobs as code_jobs
    from workers.celery_app import celery_app
    from workers.runtime import runtime

    batch = unpublished_batch(gateway, alice, [["text", f"republished {i}"] for i in range(150)])
    time.sleep(0.5)
    assert gateway.get(f"/v1/batches/{batch['id']}", headers=alice.headers).json()["pending"] == 150

    # The single-code republisher leaves batch codes to the batch one, which sends chunks, not 150 messages.
    recorder = Recorder(accept=False)
    code_jobs.republish_stale_renders(runtime().sessions, recorder, older_than=timedelta(0), limit=100_000)
    ids = set(batch_code_ids(backend, batch["id"]))
    assert not ids & {event.code_id for event in recorder.events}

    deadline = time.monotonic() + 60
    while gateway.get(f"/v1/batches/{batch['id']}", headers=alice.headers).json()["status"] == "pending":
        assert time.monotonic() < deadline, "the stale batch was never republished"
        celery_app.send_task("qrcodes.republish_stale_batch_renders")  # what beat runs every minute
        time.sleep(1)
    batch = wait_until_finished(gateway, alice, batch["id"])
    assert (batch["status"], batch["done"]) == ("done", 150)
    archive, manifest = read_archive(gateway, alice, batch)
    assert decode_png(archive.read(manifest[-1]["png_file"])) == ["republished 149"]


def test_a_chunk_past_its_time_budget_hands_the_rest_on_and_a_redelivery_skips_what_is_done(gateway, alice, backend):
    from app.qrcodes.batches import jobs
    from app.qrcodes.batches.events import BatchChunkRequested
    from workers.runtime import runtime

    batch = unpublished_batch(gateway, alice, [["text", f"budget {i}"] for i in range(3)])
    ids = batch_code_ids(backend, batch["id"])
    chunk = BatchChunkRequested(batch_id=batch["id"], code_ids=ids)
    resources = runtime()
    ticks = iter([0.0, 100.0])  # started, then: the first code took 100 s
    recorder = Recorder(accept=True)
    outcomes = jobs.render_chunk(resources.sessions, resources.store, recorder, chunk, 10.0, clock=lambda: next(ticks))
    assert outcomes == {"skipped": 0, "ready": 1, "handed_on": 2}
    assert [event.code_ids for event in recorder.events] == [ids[1:]]

    # The same chunk again (a redelivery): the first code is skipped, the others rendered once.
    outcomes = jobs.render_chunk(resources.sessions, resources.store, recorder, chunk, 10.0)
    assert outcomes == {"skipped": 1, "ready": 2}
    assert wait_until_finished(gateway, alice, batch["id"])["done"] == 3


@pytest.mark.e2e
def test_worker_processes_killed_mid_batch_still_complete_it_with_no_duplicates(
    gateway, alice, backend, redis_url, tmp_path
):
    """acks_late + reject_on_worker_lost: a SIGKILLed pool process's chunk goes back to the queue, and the
    codes it had rendered are skipped when it comes back."""
    celery, env = isolated_broker(backend, redis_url, db=8)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "-Q", "qr_batch", "-c", "2"], env=env, stdout=log, stderr=log
    )
    try:
        # Large codes draw slowly, so both pool processes are busy mid-chunk when they are killed.
        rows = [["text", f"{i:04d} " + "ÿ" * 600, "8"] for i in range(200)]
        with gateway_publishing_to(gateway, celery):
            response = post_batch(gateway, alice, csv_body(["kind", "text", "scale"], rows), "?formats=png")
        assert response.status_code == 202, response.text
        kills = _kill_pool_processes(worker.pid, times=3)
        batch = wait_until_finished(gateway, alice, response.json()["id"], timeout=240)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        log.close()
    assert kills == 3
    worker_log = Path(tmp_path / "worker.log").read_text()
    assert "WorkerLostError" in worker_log or "signal 9" in worker_log
    assert (batch["status"], batch["total"], batch["done"], batch["failed"]) == ("done", 200, 200, 0)

    ids = batch_code_ids(backend, batch["id"])
    assert len(ids) == len(set(ids)) == 200
    for code_id in ids:
        # One image per format: the render that completed the code swept what a killed one had written. (A
        # temporary file left by a process killed inside ImageStore.put outlives that sweep by design.)
        files = [p for p in backend.settings.images_dir.glob(f"*/{code_id}/*") if not p.name.startswith(".tmp-")]
        assert files and len({p.suffix for p in files}) == len(files), (code_id, files)
    archive, manifest = read_archive(gateway, alice, batch)
    assert len([n for n in archive.namelist() if n.endswith(".png")]) == 200
    for line in manifest[::25]:
        assert decode_png(archive.read(line["png_file"])) == [line["content"]]
