"""What the request-head limits of `qrflow api` (app/gateway/server.py) cost per request.

    .venv/bin/python bench/server_limits.py [--requests N] [--rounds R]

In-process, so that the figure is the protocol's own and not the machine's (a wrk run over loopback on a
shared machine drifts by more than the difference): one keep-alive connection on a stand-in transport
gets N requests (a phone's GET /r/{slug}, answered 302 by a minimal ASGI app), each parsed, run and
answered, once with uvicorn's HttpToolsProtocol (the baseline) and once with BoundedHeadProtocol,
alternately for R rounds. Prints CPU µs per request of each and the median ratio limited/plain.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/server_limits.py` puts bench/, not the project, on sys.path

from uvicorn.config import Config  # noqa: E402
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: E402
from uvicorn.server import ServerState  # noqa: E402

from app.gateway.server import BoundedHeadProtocol  # noqa: E402
from bench.common import PHONE_USER_AGENT, console, load_average  # noqa: E402

REQUEST = f"GET /r/bench HTTP/1.1\r\nHost: qr.test\r\nUser-Agent: {PHONE_USER_AGENT}\r\n\r\n".encode()


async def redirect(scope, receive, send) -> None:  # noqa: ANN001 - ASGI
    await send({"type": "http.response.start", "status": 302, "headers": [(b"location", b"https://example.com/")]})
    await send({"type": "http.response.body", "body": b""})


class Transport(asyncio.Transport):
    """A socket that accepts every write: what is measured is the protocol and the app."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def cpu_per_request(protocol: type[HttpToolsProtocol], requests: int) -> float:
    config = Config(app=redirect, access_log=False)
    config.load()
    connection = protocol(config=config, server_state=ServerState(), app_state={})
    connection.connection_made(Transport())
    started = time.process_time()
    for _ in range(requests):
        connection.data_received(REQUEST)
        await asyncio.sleep(0)  # the request's task runs
        await asyncio.sleep(0)
    elapsed = time.process_time() - started
    connection.connection_lost(None)
    return elapsed / requests * 1e6


async def measure(requests: int, rounds: int) -> None:
    await cpu_per_request(HttpToolsProtocol, requests)  # warm-up, discarded
    plain, limited = [], []
    for _ in range(rounds):
        plain.append(await cpu_per_request(HttpToolsProtocol, requests))
        limited.append(await cpu_per_request(BoundedHeadProtocol, requests))
    ratios = [b / a for a, b in zip(plain, limited, strict=True)]
    console.print(f"plain (uvicorn HttpToolsProtocol): {statistics.median(plain):.2f} µs CPU per request")
    console.print(f"limited (BoundedHeadProtocol):     {statistics.median(limited):.2f} µs CPU per request")
    console.print(f"limited/plain: {statistics.median(ratios):.3f} (median of {rounds} rounds; "
                  f"each {', '.join(f'{r:.3f}' for r in ratios)}); load {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per measurement (default 20,000)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    args, _ = parser.parse_known_args()  # bench/run.py passes every benchmark the same arguments
    console.print(f"server limits: {args.requests:,} requests × {args.rounds} rounds; load {load_average()}")
    asyncio.run(measure(args.requests, args.rounds))


if __name__ == "__main__":
    main()
