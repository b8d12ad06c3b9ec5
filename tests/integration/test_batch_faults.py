"""Faults lose no batch code and duplicate none: the broker down when the gateway publishes, a chunk too
long for its time limit, worker processes SIGKILLed mid-chunk."""

from __future__ import annotations

import time
from datetime import timedelta

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
    POISON,
    RECOVERY_ENV,
    _kill_pool_processes,
    gateway_publishing_to,
    poison_time_limit,
)
from tests.integration.worker_processes import Processes, render_rows


def test_broker_down_at_publish_time_the_republisher_completes_the_batch(gateway, alice, backend):
    from app.qrcodes import recovery
    from workers.celery_app import celery_app
    from workers.runtime import runtime

    batch = unpublished_batch(gateway, alice, [["text", f"republished {i}"] for i in range(150)])
    time.sleep(0.5)
    assert gateway.get(f"/v1/batches/{batch['id']}", headers=alice.headers).json()["pending"] == 150

    # The single-code republisher leaves batch codes to the batch one, which sends chunks, not 150 messages.
    recorder = Recorder(accept=False)
    lost_after = recovery.LostAfter(unclaimed=timedelta(0), time_limit=timedelta(seconds=60))
    recovery.republish_lost_renders(runtime().sessions, recorder, runtime().inventory, lost_after, limit=100_000)
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
    """acks_late + reject_on_worker_lost: a SIGKILLed pool process's chunk goes back to the queue (or, if
    the kill lost it, the republisher sees the chunk's dead claims), and the codes it had rendered are
    skipped when it comes back."""
    platform = Processes(backend, redis_url, db=8, tmp_path=tmp_path, **RECOVERY_ENV)
    try:
        worker = platform.worker("qr_batch,default")
        platform.beat()
        platform.wait_for_log("ready.")
        # Large codes draw slowly, so both pool processes are busy mid-chunk when they are killed.
        rows = [["text", f"{i:04d} " + "ÿ" * 600, "8"] for i in range(200)]
        with gateway_publishing_to(gateway, platform.celery):
            response = post_batch(gateway, alice, csv_body(["kind", "text", "scale"], rows), "?formats=png")
        assert response.status_code == 202, response.text
        kills = _kill_pool_processes(worker.pid, times=3)
        batch = wait_until_finished(gateway, alice, response.json()["id"], timeout=300)
    finally:
        platform.stop()
    assert kills == 3
    worker_log = platform.logs()
    assert "WorkerLostError" in worker_log or "signal 9" in worker_log
    assert (batch["status"], batch["total"], batch["done"], batch["failed"]) == ("done", 200, 200, 0)
    # Only what was lost went back: at most a chunk's codes per kill.
    assert sum(event["count"] for event in platform.logged_events("batch_renders_republished")) <= kills * 100

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


@pytest.mark.e2e
def test_a_code_that_kills_its_process_fails_after_3_attempts_and_the_rest_of_its_chunk_completes(
    gateway, alice, backend, redis_url, tmp_path
):
    """Issue #13, item 3, with a hard time limit the poison code reliably passes: its pool process is
    SIGKILLed and Celery acknowledges the message, so the broker holds nothing for the chunk; its claims
    are dead, and beat's republisher sends the poison code back alone and the codes it had not reached in a
    chunk of their own. The third death makes it `failed` with the reason; nothing is sent again after."""
    from app.kit.broker_inventory import RedisInventory

    limit = poison_time_limit()
    limits = {"QRFLOW_TASK_SOFT_TIME_LIMIT_SECONDS": "0", "QRFLOW_TASK_TIME_LIMIT_SECONDS": str(limit)}
    platform = Processes(backend, redis_url, db=13, tmp_path=tmp_path, QRFLOW_WORKER_NICE="0", **RECOVERY_ENV | limits)
    items = [
        {"kind": "text", "data": {"text": "before the poison"}},
        POISON,
        {"kind": "text", "data": {"text": "after the poison"}},
    ]
    try:
        platform.worker("qr_batch,default", concurrency=1)
        with gateway_publishing_to(gateway, platform.celery):
            response = post_batch(gateway, alice, {"items": items})
        assert response.status_code == 202, response.text
        first, poison, last = batch_code_ids(backend, response.json()["id"])

        # Without beat: the kill leaves the poison code pending, claimed by a process that is gone, and the
        # code after it too, with no message for either anywhere in the broker.
        platform.wait_for_log(f"Hard time limit ({limit}s) exceeded")
        platform.wait_for_log("exited with 'signal 9 (SIGKILL)'")
        deadline = time.monotonic() + 30  # the worker's main process acknowledges it after logging the kill
        while held := list(RedisInventory(platform.celery).held("qr_batch")):
            assert time.monotonic() < deadline, f"the broker still holds {held}"
            time.sleep(0.2)
        rows = render_rows(backend, [first, poison, last])
        assert (rows[poison]["status"], rows[last]["status"]) == ("pending", "pending")
        # (On a busy host the kill can come while a fresh pool process still sets up: then no render began.)
        assert rows[poison]["attempts"] <= 1 and rows[last]["attempts"] == 0
        assert rows[poison]["claimed"] == rows[last]["claimed"] is not None

        platform.beat()
        batch = wait_until_finished(gateway, alice, response.json()["id"], timeout=240)
        kills = platform.logs().count(f"Hard time limit ({limit}s) exceeded for qrcodes.render_batch")
        time.sleep(5)  # beat's republisher runs five more times: nothing is sent again
        rows = render_rows(backend, [first, poison, last])
    finally:
        platform.stop()
    # Killed at the hard limit, as a rule; on a host short of memory the 109-megapixel read-back can also
    # raise (zxing-cpp's TypeError when Pillow cannot hand it the pixels): an attempt all the same.
    reason = rows[poison]["error"]
    assert reason.startswith("rendering did not finish in 3 attempts; the last one"), reason
    assert (batch["status"], batch["done"], batch["failed"]) == ("failed", 2, 1)
    assert [(e["row"], e["message"]) for e in batch["errors"]] == [(2, reason)]
    assert (rows[poison]["status"], rows[poison]["attempts"]) == ("failed", 3)
    assert rows[last]["status"] == "ready" and rows[first]["status"] == "ready"
    # Nothing was sent again once it failed. (The limit is every task's: on a busy host a republisher's run
    # may pass it too, and is only run again.)
    assert kills >= 1
    assert platform.logs().count(f"Hard time limit ({limit}s) exceeded for qrcodes.render_batch") == kills
