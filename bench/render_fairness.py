"""How long one workspace's single code waits while another workspace's batch renders.

    .venv/bin/python bench/render_fairness.py [--rows N] [--singles K]

Two layouts of the render workers, each on a fresh platform (gateway, Redis, SQLite), the same work:
  one pool     one worker consuming both render queues (qr, qr_batch), one process per core
  split        what `qrflow up` runs (app/launcher.py): a worker for qr, another for qr_batch
A batch of N rows (scale 12) is posted; once 20 of its codes are ready, K single codes are created one
after another, each timed from its POST until it is `ready`. Before batch chunks had a queue of their own
they shared `qr` with single codes, FIFO: a single code waited for the whole batch ahead of it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.launcher import worker_arguments  # noqa: E402
from bench.common import platform_running, temp_dir  # noqa: E402

LAYOUTS = {
    "one pool": (["-Q", "qr,qr_batch", "-c", "0"], ()),
    "split": (worker_arguments("qr"), (worker_arguments("qr_batch"),)),
}


def wait_ready(client: httpx.Client, code_id: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/v1/qrcodes/{code_id}").json()["status"] == "pending":
        if time.monotonic() > deadline:
            raise RuntimeError(f"code {code_id} still pending after {timeout} s")
        time.sleep(0.02)


def run(layout: str, rows: int, singles: int) -> list[float]:
    first, more = LAYOUTS[layout]
    with temp_dir("qrflow-bench-fairness-") as tmp, platform_running(tmp, first, more_workers=more) as (base, key, *_):
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        single = {"kind": "url", "data": {"url": "https://example.com/single"}}
        wait_ready(client, client.post("/v1/qrcodes", json=single).json()["id"])  # workers up
        items = [{"kind": "text", "data": {"text": f"row {i} " + "x" * 200}, "style": {"scale": 12}}
                 for i in range(rows)]
        batch = client.post("/v1/batches", json={"items": items}).json()
        while client.get(f"/v1/batches/{batch['id']}").json()["done"] < 20:
            time.sleep(0.1)
        waits = []
        for _ in range(singles):
            started = time.monotonic()
            wait_ready(client, client.post("/v1/qrcodes", json=single).json()["id"])
            waits.append(time.monotonic() - started)
        pending = client.get(f"/v1/batches/{batch['id']}").json()["pending"]
        print(f"{layout:>9}: batch codes still pending after the singles: {pending}", flush=True)
        return waits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--singles", type=int, default=5)
    args, _ = parser.parse_known_args()  # bench/run.py passes every benchmark the same arguments
    results = {layout: run(layout, args.rows, args.singles) for layout in LAYOUTS}
    print(f"{'layout':>9} {'median s':>9} {'max s':>7}")
    for layout, waits in results.items():
        print(f"{layout:>9} {statistics.median(waits):>9.2f} {max(waits):>7.2f}")
    ratio = statistics.median(results["one pool"]) / statistics.median(results["split"])
    print(f"one pool ÷ split (median): {ratio:.1f}")


if __name__ == "__main__":
    main()
