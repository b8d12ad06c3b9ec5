"""`python -m tests.integration.poller URL SLUG REPORT`: the poller of gateway_process.Poller, in a process
of its own. Rewrites REPORT (JSON) after every answer; after its warm-up round the longest wait counts."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import httpx


def main(url: str, slug: str, report: str) -> None:
    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    state = {"answered": 0, "longest": 0.0, "slowest": "", "wrong": []}
    requests = [("GET", "/healthz", 200), ("HEAD", f"/r/{slug}", 302)]
    # A new connection for every request (it must be accepted during the attack), but one client: building
    # one per request costs more CPU than the request, on a shared machine.
    client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=30)
    while not stopped:
        for method, path, expected in requests:
            started = time.monotonic()
            try:
                status: int | str = client.request(method, url + path).status_code
            except httpx.HTTPError as exc:
                status = repr(exc)
            took = time.monotonic() - started
            if state["answered"] >= 2 and took > state["longest"]:
                state["longest"], state["slowest"] = took, f"{method} {path} at {time.strftime('%X')}"
            state["answered"] += 1
            if status != expected:
                state["wrong"].append(f"{method} {path}: {status}")
            partial = f"{report}.tmp"
            with open(partial, "w") as out:
                json.dump(state, out)
            os.replace(partial, report)
        time.sleep(0.05)


if __name__ == "__main__":
    main(*sys.argv[1:4])
