"""Beat really schedules the rollup: a `qrflow beat` with a one-second interval and a `qrflow worker -Q
analytics`, on a broker database of their own, fold scans stored behind their backs, again and again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.analytics import rollup as rollups
from app.analytics.buckets import DIMENSION_NAMES
from app.kit.db import create_sync_engine, sync_sessionmaker
from tests.integration.analytics_helpers import insert_scans, new_links, scan_row, stored_buckets
from tests.integration.test_faults import isolated_broker


def wait_for(condition, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.2)


@pytest.mark.e2e
def test_beat_schedules_rollups_that_a_worker_runs(backend, redis_url, tmp_path):
    celery, env = isolated_broker(backend, redis_url, db=12)
    env = {**env, "QRFLOW_ROLLUP_INTERVAL_SECONDS": "1"}
    engine = create_sync_engine(backend.settings)
    sessions = sync_sessionmaker(engine)
    [link] = new_links(engine, 1)
    logs = [(tmp_path / f"{name}.log").open("wb") for name in ("worker", "beat")]
    processes = [
        subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "-Q", "analytics", "-c", "1", "--pool", "solo"],
                         env=env, stdout=logs[0], stderr=logs[0]),
        # Beat keeps its schedule file in QRFLOW_DATA_DIR: this test's directory, not the backend's.
        subprocess.Popen([sys.executable, "-m", "app.cli", "beat"], env={**env, "QRFLOW_DATA_DIR": str(tmp_path)},
                         stdout=logs[1], stderr=logs[1]),
    ]
    try:
        for n, day in enumerate((datetime(2026, 4, 1, 9, tzinfo=UTC), datetime(2026, 4, 2, 9, tzinfo=UTC)), start=1):
            insert_scans(engine, [scan_row(link, day, visitor="v")])
            # A daily bucket per dimension for each day folded.
            folded = len(DIMENSION_NAMES) * n
            wait_for(lambda folded=folded: len(stored_buckets(engine, [link])[1]) == folded, f"rollup number {n}")
        assert rollups.read_state(sessions).last_scan_id > 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        for log in logs:
            log.close()
        celery.control.purge()  # beat's other periodic tasks, which nothing consumes here
        engine.dispose()
    assert list(tmp_path.glob("celerybeat-schedule*")), "beat kept no schedule file in its data directory"
    assert "analytics.rollup" in Path(tmp_path / "worker.log").read_text()


@pytest.mark.e2e
def test_qrflow_rollup_runs_it_by_hand(backend, tmp_path):
    """The CLI, in a process of its own (which loads the rollup and nothing else of the workers')."""
    engine = create_sync_engine(backend.settings)
    [link] = new_links(engine, 1)
    insert_scans(engine, [scan_row(link, datetime(2026, 4, 3, 9, tzinfo=UTC), visitor="cli")])
    env = {**os.environ, "QRFLOW_DATABASE_URL": backend.settings.database_url, "QRFLOW_DATA_DIR": str(tmp_path)}
    for argv in (["rollup"], ["rollup", "--rebuild", "--from", "2026-04-01"]):
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", *argv], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "rolled up" in done.stderr
        assert stored_buckets(engine, [link])[1][(link, "all", "", "2026-04-03")] == (1, 0, 1)
    refused = subprocess.run([sys.executable, "-m", "app.cli", "rollup", "--from", "2026-04-01"], env=env,
                             capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "--rebuild" in refused.stderr
    engine.dispose()
