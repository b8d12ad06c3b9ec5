"""Two `qrflow up` on one machine (issue #14, items 1 and 2): a taken port stops the second at once, naming
the port; `up` trusts only a gateway that answers with its own instance id; and a second instance on the
first one's Redis database is refused, while another database of the same Redis is isolated."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.kit.instance import INSTANCE_HEADER
from app.kit.redis_server import free_port
from app.kit.supervisor import Supervisor
from app.launcher import wait_ready
from tests.e2e.test_up import (
    KEY_PREFIX,
    _create_and_fetch_a_code,
    _stop,
    _stop_and_check_no_orphans,
    _wait_until_up,
    qrflow_up,
)

pytestmark = pytest.mark.e2e

REFUSAL_TIMEOUT = 60.0


@contextmanager
def another_server(instance: str | None) -> Iterator[int]:
    """A real HTTP server answering 200 to everything, as another instance's gateway or Flower would."""

    class Ready(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = b'{"status": "ready", "database": "ok", "broker": "ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if instance is not None:
                self.send_header(INSTANCE_HEADER, instance)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("variable", ["api_port", "flower_port"])
def test_a_taken_port_stops_qrflow_up_at_once_naming_the_port(tmp_path: Path, variable: str) -> None:
    with another_server(instance="someone-else") as port, qrflow_up(
        tmp_path, tmp_path / "data", "taken", **{variable: port}
    ) as up:
        code = up.process.wait(REFUSAL_TIMEOUT)
        assert code != 0, up.tail()
        stderr = up.stderr()
        assert f"port {port} on 127.0.0.1 (QRFLOW_{variable.upper()})" in stderr, up.tail()
        assert "is taken" in stderr, up.tail()
        assert "qrflow is up" not in stderr, up.tail()
        assert KEY_PREFIX not in up.stdout(), f"a key was issued for a gateway that never ran{up.tail()}"
        assert not (tmp_path / "data" / "qrflow.db").exists(), "nothing is created before the ports are checked"


@pytest.mark.parametrize(
    ("answering", "expected"),
    [(None, "something else answers"), ("another-instance", "another qrflow instance answers")],
)
def test_up_waits_only_for_a_gateway_with_its_own_instance_id(answering: str | None, expected: str) -> None:
    with another_server(instance=answering) as port:
        problem = wait_ready(f"http://127.0.0.1:{port}/readyz", "this-instance", Supervisor([], {}), timeout=10)
    assert problem is not None and expected in problem, problem
    with another_server(instance="this-instance") as port:
        assert wait_ready(f"http://127.0.0.1:{port}/readyz", "this-instance", Supervisor([], {}), timeout=10) is None


def test_a_second_instance_on_the_same_redis_database_is_refused_another_database_is_isolated(tmp_path: Path) -> None:
    with qrflow_up(tmp_path, tmp_path / "first", "first") as first:
        first_key = _wait_until_up(first, expect_key=True)
        shared = f"redis://127.0.0.1:{first.redis_port}/0"

        with qrflow_up(tmp_path, tmp_path / "second", "same-db", redis_url=shared) as refused:
            code = refused.process.wait(REFUSAL_TIMEOUT)
            assert code != 0, refused.tail()
            stderr = refused.stderr()
            assert f"another qrflow instance uses the Redis database at {shared}" in stderr, refused.tail()
            assert str(tmp_path / "first") in stderr and first.api in stderr, refused.tail()
            assert f"QRFLOW_REDIS_URL=redis://127.0.0.1:{first.redis_port}/1" in stderr, refused.tail()
            assert "qrflow is up" not in stderr, refused.tail()

        with qrflow_up(tmp_path, tmp_path / "third", "other-db", redis_url=shared.replace("/0", "/1")) as third:
            third_key = _wait_until_up(third, expect_key=True)
            # Each renders its own code: neither's workers take the other's tasks.
            _create_and_fetch_a_code(third, third_key)
            _create_and_fetch_a_code(first, first_key)
            assert _stop(third) == 0, third.tail()  # its Redis is the first's: not in its tree
        _stop_and_check_no_orphans(first)
