"""Issue #13's attacks on a real `qrflow api` process (items 1, 4 and 5), each while a poller checks that
/healthz and a redirect keep answering within a second (tests/integration/gateway_process.py)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from app.gateway.idempotency import IdempotencyRecord
from app.gateway.server import HEAD_TIMEOUT_SECONDS, MAX_HEAD_BYTES
from app.kit.db import create_sync_engine, sync_sessionmaker
from app.qrcodes.batches.intake import MAX_COLUMNS
from tests.integration.gateway_process import GatewayProcess, Poller


@pytest.fixture
def api(backend, tmp_path) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(backend, tmp_path)
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def poller(api) -> Iterator[Poller]:
    slug = api.dynamic_slug(api.caller(f"poller-{uuid.uuid4().hex[:8]}"))
    with Poller(api, slug) as running:
        yield running


def only_sqlite(backend) -> None:
    if backend.name != "sqlite":
        pytest.skip("the server's own limits do not depend on the database")


def huge_batch(limit: int = 16 * 1024 * 1024) -> bytes:
    """A JSON batch just under the batch body limit: about two million tiny items, as in the report."""
    item = b'{"a":1},'
    count = (limit - 64) // len(item)
    return b'{"items":[' + item * (count - 1) + item[:-1] + b"]}"


def read_head(sock: socket.socket, timeout: float) -> bytes:
    """The response's status line and headers (or what came before the server closed)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


def records_with(backend, key: str) -> list[IdempotencyRecord]:
    engine = create_sync_engine(backend.settings)
    try:
        with sync_sessionmaker(engine)() as session:
            return list(session.scalars(select(IdempotencyRecord).where(IdempotencyRecord.key == key)))
    finally:
        engine.dispose()


# --- item 1: Idempotency-Key before authentication ----------------------------------------------------


def test_an_unauthenticated_idempotent_request_is_refused_before_its_body_is_read(api, poller, backend):
    key = f"x1-{uuid.uuid4().hex}"
    body = huge_batch()
    head = (
        f"POST /v1/batches HTTP/1.1\r\nHost: qr.test\r\nAuthorization: Bearer qrf_deadbeef_notarealkey\r\n"
        f"Idempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    # Only the first kilobyte of the body is sent: the 401 must come without the rest.
    with socket.create_connection(api.address) as sock:
        sock.sendall(head + body[:1024])
        answer = read_head(sock, timeout=10)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]

    # Three whole ones at once, as in the report.
    statuses: list[int | str] = []

    def send_whole() -> None:
        headers = {
            "Authorization": "Bearer qrf_deadbeef_notarealkey",
            "Idempotency-Key": key,
            "Content-Type": "application/json",
        }
        try:
            statuses.append(httpx.post(f"{api.url}/v1/batches", content=body, headers=headers, timeout=60).status_code)
        except httpx.HTTPError as exc:
            statuses.append(repr(exc))

    senders = [threading.Thread(target=send_whole) for _ in range(3)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(120)
    poller.check()
    assert statuses == [401, 401, 401]
    assert records_with(backend, key) == []


def test_an_idempotent_batch_replays_and_its_content_type_counts(api, backend):
    caller = api.caller(f"idem-{uuid.uuid4().hex[:8]}")
    headers = {**caller.headers, "Idempotency-Key": str(uuid.uuid4())}
    body = b"kind,text\r\ntext,once\r\n"
    with api.client() as client:
        first = client.post("/v1/batches", content=body, headers={**headers, "Content-Type": "text/csv"})
        again = client.post("/v1/batches", content=body, headers={**headers, "Content-Type": "text/csv"})
        # The same bytes sent as another media type are another request (the fingerprint has Content-Type).
        other_type = client.post("/v1/batches", content=body, headers={**headers, "Content-Type": "text/plain"})
    assert first.status_code == 202, first.text
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert other_type.status_code == 422 and other_type.json()["code"] == "idempotency_key_reused"


# --- item 4: a CSV header of 30,000 columns ---------------------------------------------------------------


def test_a_csv_header_wider_than_the_limit_is_refused_at_once(api, poller, backend):
    only_sqlite(backend)
    caller = api.caller(f"csv-{uuid.uuid4().hex[:8]}")
    header = ",".join(["kind", *(f"c{i}" for i in range(30_000))])
    body = f"{header}\r\nurl{',' * 30_000}\r\n".encode()
    with api.client() as client:
        started = time.monotonic()
        response = client.post("/v1/batches", content=body, headers={**caller.headers, "Content-Type": "text/csv"})
        elapsed = time.monotonic() - started
    poller.check()
    assert response.status_code == 422
    error = response.json()
    message = f"the header row has 30,001 columns; at most {MAX_COLUMNS:,}"
    assert error["errors"] == [{"row": 1, "field": "header", "type": "too_long", "message": message}]
    assert len(response.content) < 10_000
    assert elapsed < 10, f"took {elapsed:.1f} s"  # 26-30 s before


# --- item 5: request heads ------------------------------------------------------------------------------------


def test_endless_header_lines_are_431_and_hold_no_memory(api, poller, backend):
    """20 connections each sending 8 MB of header lines, never the blank line that ends them."""
    only_sqlite(backend)
    rss_before = api.rss()
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    answers: list[bytes] = []

    def flood() -> None:
        with socket.create_connection(api.address) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: qr.test\r\n")
            try:
                for _ in range(8 * 1024 * 1024 // len(line)):
                    sock.sendall(line)
            except OSError:  # the server answered and closed: that is the point
                pass
            answers.append(read_head(sock, timeout=15))

    floods = [threading.Thread(target=flood) for _ in range(20)]
    for thread in floods:
        thread.start()
    for thread in floods:
        thread.join(120)
    poller.check()
    assert len(answers) == 20
    assert all(answer.startswith(b"HTTP/1.1 431 ") for answer in answers), [a[:40] for a in answers]
    # 20 × (64 KiB + one read) at most; the report saw 150 MB more.
    assert api.rss() - rss_before < 50 * 1024 * 1024


def test_a_header_exactly_under_the_limit_is_served(api, backend):
    only_sqlite(backend)
    filler = "a" * (MAX_HEAD_BYTES - 1024)
    response = httpx.get(f"{api.url}/healthz", headers={"X-Filler": filler}, timeout=10)
    assert response.status_code == 200


def test_clients_trickling_their_headers_are_disconnected(api, poller, backend):
    """200 sockets sending one header line a second: each is answered 408 and closed after the deadline."""
    only_sqlite(backend)
    sockets = [socket.create_connection(api.address) for _ in range(200)]
    opened = time.monotonic()
    for sock in sockets:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: qr.test\r\n")
        sock.setblocking(False)
    closed: dict[int, float] = {}
    answers: dict[int, bytes] = {}
    while len(closed) < len(sockets) and time.monotonic() - opened < HEAD_TIMEOUT_SECONDS * 3:
        for index, sock in enumerate(sockets):
            if index in closed:
                continue
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            if data:
                answers[index] = answers.get(index, b"") + data
            elif data == b"":
                closed[index] = time.monotonic() - opened
                continue
            try:
                sock.send(b"X-Slow: 1\r\n")
            except OSError:
                closed[index] = time.monotonic() - opened
        time.sleep(1)
    for sock in sockets:
        sock.close()
    poller.check()
    assert len(closed) == len(sockets), f"{len(sockets) - len(closed)} connections still open"
    assert max(closed.values()) < HEAD_TIMEOUT_SECONDS * 2
    assert sum(answer.startswith(b"HTTP/1.1 408 ") for answer in answers.values()) >= len(sockets) * 0.9
