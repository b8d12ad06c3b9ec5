"""Safety: rate limits (Redis), idempotency keys (the database), body size limit, CORS, security headers.

Each test that needs other settings builds its own app and TestClient on the backend's database, and
issues fresh API keys, so rate-limit counters and idempotency keys never collide between tests or
between the SQLite and PostgreSQL runs (they share one Redis).
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import anyio
import httpx
import pytest
import uvicorn
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.gateway import ratelimit
from app.gateway.idempotency import IdempotencyRecord
from app.gateway.main import create_app
from app.identity.models import Scope
from app.kit.db import create_sync_engine, sync_sessionmaker, utcnow
from app.kit.redis_server import RedisServer, find_binary, free_port
from app.kit.settings import Settings
from tests.conftest import Caller, _issue

TEXT = {"kind": "text", "data": {"text": "idempotent"}}


def settings_for(backend, **overrides) -> Settings:
    return Settings(**{**backend.settings.model_dump(), **overrides})


@contextmanager
def client_for(backend, client_address: str = "testclient", **overrides) -> Iterator[TestClient]:
    app = create_app(settings_for(backend, **overrides))
    with TestClient(app, raise_server_exceptions=False, client=(client_address, 50000)) as client:
        yield client


def new_caller(backend, workspace: str | None = None, scope: Scope = Scope.WRITE) -> Caller:
    """A key in a workspace of its own (unless named): its code list holds only what the test made."""
    return _issue(backend.settings, workspace or f"safety-{uuid.uuid4().hex[:12]}", scope)


def metric(client: TestClient, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def codes_in(client: TestClient, caller: Caller) -> list[str]:
    return [c["id"] for c in client.get("/v1/qrcodes?limit=200", headers=caller.headers).json()["items"]]


def forged(caller: Caller, secret: str = "x" * 32) -> dict[str, str]:
    """The same key prefix (which is not secret) with another secret."""
    prefix = caller.key.split("_")[1]
    return {"Authorization": f"Bearer qrf_{prefix}_{secret}"}


# --- rate limits -------------------------------------------------------------------------------------


def test_rate_limit_per_api_key(backend):
    a, b, c = new_caller(backend), new_caller(backend), new_caller(backend)
    with client_for(backend, rate_limit="5/minute") as client:
        for remaining in (4, 3, 2, 1, 0):
            response = client.get("/v1/qrcodes", headers=a.headers)
            assert response.status_code == 200
            assert response.headers["ratelimit-limit"] == "5"
            assert response.headers["ratelimit-remaining"] == str(remaining)
            assert 0 < int(response.headers["ratelimit-reset"]) <= 60
        before = metric(client, "qrflow_rate_limited_total", limit="api")
        refused = client.post("/v1/qrcodes", json=TEXT, headers=a.headers)
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited" and "5 per 1 minute" in refused.json()["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["ratelimit-remaining"] == "0"
        assert refused.headers["ratelimit-limit"] == "5"
        assert metric(client, "qrflow_rate_limited_total", limit="api") == before + 1
        # b's budget is b's own.
        assert client.get("/v1/qrcodes", headers=b.headers).headers["ratelimit-remaining"] == "4"

        # Made-up keys with c's (public) prefix get 401 and do not spend c's budget (one made-up key
        # used over and over is a caller of its own, and limited like one).
        for _ in range(6):
            assert client.get("/v1/qrcodes", headers=forged(c, uuid.uuid4().hex)).status_code == 401
        assert [client.get("/v1/qrcodes", headers=forged(c)).status_code for _ in range(6)] == [401] * 5 + [429]
        assert client.get("/v1/qrcodes", headers=c.headers).headers["ratelimit-remaining"] == "4"

        # Unauthenticated requests and routes outside /v1 are not limited here.
        for _ in range(7):
            unauthenticated = client.get("/v1/qrcodes")
            assert unauthenticated.status_code == 401 and "ratelimit-limit" not in unauthenticated.headers
        assert "ratelimit-limit" not in client.get("/healthz").headers


def test_moving_window_lets_requests_through_again(backend):
    caller = new_caller(backend)
    with client_for(backend, rate_limit="2/second") as client:
        assert [client.get("/v1/qrcodes", headers=caller.headers).status_code for _ in range(3)] == [200, 200, 429]
        time.sleep(1.1)
        assert client.get("/v1/qrcodes", headers=caller.headers).status_code == 200


def test_the_default_is_no_limit(gateway, alice):
    response = gateway.get("/v1/qrcodes", headers=alice.headers)
    assert response.status_code == 200 and "ratelimit-limit" not in response.headers


def test_redirect_limit_per_client_ip(backend):
    caller = new_caller(backend)
    slug = f"limited-{uuid.uuid4().hex[:8]}"
    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    with client_for(backend, redirect_rate_limit="3/minute", client_address=address) as client:
        created = client.post(
            "/v1/qrcodes",
            json={"kind": "url", "data": {"url": "https://example.com/x"}, "slug": slug},
            headers=caller.headers,
        )
        assert created.status_code == 202
        assert "ratelimit-limit" not in created.headers  # no API limit configured
        statuses = [client.get(f"/r/{slug}", follow_redirects=False).status_code for _ in range(4)]
        assert statuses == [302, 302, 302, 429]
        refused = client.get(f"/r/{slug}", follow_redirects=False, headers={"accept": "application/json"})
        assert refused.json()["code"] == "rate_limited" and "retry-after" in refused.headers
        # People get a page, as for the redirect's 404 and 410 (#13 item 12).
        page = client.get(f"/r/{slug}", follow_redirects=False, headers={"accept": "text/html,*/*;q=0.8"})
        assert page.status_code == 429 and page.headers["content-type"].startswith("text/html")
        assert "Too many requests" in page.text and "retry-after" in page.headers
        assert "default-src 'none'" in page.headers["content-security-policy"]
    with client_for(backend, redirect_rate_limit="3/minute", client_address=address + "1") as other:
        assert other.get(f"/r/{slug}", follow_redirects=False).status_code == 302


def test_rate_limiter_fails_open_when_redis_is_down(backend, tmp_path, monkeypatch):
    monkeypatch.setattr(ratelimit, "REDIS_RETRY_SECONDS", 0.0)
    redis_server = RedisServer(find_binary()[0], free_port(), tmp_path / "redis").start()
    caller = new_caller(backend)
    try:
        with client_for(backend, rate_limit="3/minute", redis_url=redis_server.url) as client:
            assert client.get("/v1/qrcodes", headers=caller.headers).headers["ratelimit-remaining"] == "2"
            redis_server.stop()
            before = metric(client, "qrflow_rate_limiter_fail_open_total", limit="api")
            started = time.monotonic()
            for _ in range(5):  # over the limit, but nobody can count: served
                response = client.get("/v1/qrcodes", headers=caller.headers)
                assert response.status_code == 200 and "ratelimit-limit" not in response.headers
            assert time.monotonic() - started < 5
            assert metric(client, "qrflow_rate_limiter_fail_open_total", limit="api") == before + 5

            redis_server.start()  # back on the same port: counted again
            assert client.get("/v1/qrcodes", headers=caller.headers).headers["ratelimit-remaining"] in ("1", "2")
    finally:
        redis_server.stop()


def test_a_bad_limit_is_refused_at_start():
    with pytest.raises(ValueError, match="rate limit"):
        Settings(rate_limit="lots")
    with pytest.raises(ValueError, match="one limit"):
        Settings(rate_limit="10/second;600/minute")


# --- idempotency keys --------------------------------------------------------------------------------


def post(client: TestClient, caller: Caller, body: object, key: str | None, **kwargs) -> httpx.Response:
    headers = {**caller.headers, **({"Idempotency-Key": key} if key else {})}
    if isinstance(body, bytes):
        return client.post(
            "/v1/qrcodes", content=body, headers={**headers, "Content-Type": "application/json"}, **kwargs
        )
    return client.post("/v1/qrcodes", json=body, headers=headers, **kwargs)


def test_a_retry_returns_the_first_response_and_creates_nothing(gateway, backend):
    caller = new_caller(backend)
    key = str(uuid.uuid4())
    first = post(gateway, caller, {**TEXT, "title": "once", "tags": ["a", "b"]}, key)
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers

    again = post(gateway, caller, {**TEXT, "title": "once", "tags": ["a", "b"]}, key)
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["content-type"] == "application/json"
    assert again.headers["idempotent-replayed"] == "true"
    # A client that serialises its retry differently sends the same request.
    reserialised = post(
        gateway,
        caller,
        b'{ "tags": ["a","b"], "title": "once",\n "data": {"text": "idempotent"}, "kind": "text" }',
        key,
    )
    assert reserialised.status_code == 202 and reserialised.json()["id"] == first.json()["id"]
    assert codes_in(gateway, caller) == [first.json()["id"]]

    # Without the header, or with another key, the same body creates another code.
    assert post(gateway, caller, {**TEXT, "title": "once", "tags": ["a", "b"]}, None).status_code == 202
    assert post(gateway, caller, {**TEXT, "title": "once", "tags": ["a", "b"]}, str(uuid.uuid4())).status_code == 202
    assert len(codes_in(gateway, caller)) == 3


def test_the_same_key_with_another_body_is_422(gateway, backend):
    caller = new_caller(backend)
    key = str(uuid.uuid4())
    assert post(gateway, caller, TEXT, key).status_code == 202
    reused = post(gateway, caller, {**TEXT, "title": "different"}, key)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused" and "different request" in reused.json()["message"]
    assert len(codes_in(gateway, caller)) == 1


def test_keys_are_scoped_per_api_key(gateway, backend):
    workspace_a = f"safety-{uuid.uuid4().hex[:12]}"
    alice = new_caller(backend, workspace_a)
    bob = new_caller(backend)
    alice_2 = new_caller(backend, workspace_a)
    key = "order-1234"
    a = post(gateway, alice, TEXT, key)
    b = post(gateway, bob, TEXT, key)
    a2 = post(gateway, alice_2, TEXT, key)
    assert a.status_code == b.status_code == a2.status_code == 202
    assert len({a.json()["id"], b.json()["id"], a2.json()["id"]}) == 3
    assert "idempotent-replayed" not in b.headers
    # Knowing alice's key prefix and her Idempotency-Key replays nothing.
    stolen = gateway.post("/v1/qrcodes", json=TEXT, headers={**forged(alice), "Idempotency-Key": key})
    assert stolen.status_code == 401 and a.json()["id"] not in stolen.text


def test_a_concurrent_duplicate_is_409(backend):
    """While the first request runs, its retry is told to wait, and a different request is refused."""
    caller = new_caller(backend)
    app = create_app(settings_for(backend))
    entered, release, calls = threading.Event(), threading.Event(), []

    @app.post("/v1/slow", status_code=201)
    async def slow(body: dict) -> dict:
        calls.append(body)
        entered.set()
        await anyio.to_thread.run_sync(release.wait, 30)  # in flight until the test lets go
        return {"call": len(calls)}

    key = str(uuid.uuid4())
    headers = {**caller.headers, "Idempotency-Key": key}
    with TestClient(app, raise_server_exceptions=False) as client:
        results: dict[str, httpx.Response] = {}
        first = threading.Thread(
            target=lambda: results.setdefault("first", client.post("/v1/slow", json={"n": 1}, headers=headers))
        )
        first.start()
        try:
            assert entered.wait(10)
            duplicate = client.post("/v1/slow", json={"n": 1}, headers=headers)
            assert duplicate.status_code == 409
            assert duplicate.json()["code"] == "idempotency_key_in_use"
            assert duplicate.headers["retry-after"] == "1"
            assert client.post("/v1/slow", json={"n": 2}, headers=headers).status_code == 422
        finally:
            release.set()
            first.join(30)
        assert results["first"].status_code == 201
        replay = client.post("/v1/slow", json={"n": 1}, headers=headers)
        assert replay.status_code == 201 and replay.json() == {"call": 1}
        assert replay.headers["idempotent-replayed"] == "true"
    assert calls == [{"n": 1}]


def test_4xx_is_stored_and_an_exception_is_not(backend):
    caller = new_caller(backend)
    app = create_app(settings_for(backend))
    calls = []

    @app.post("/v1/explodes-once", status_code=201)
    async def explodes_once() -> dict:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the first attempt broke")
        return {"attempt": len(calls)}

    with TestClient(app, raise_server_exceptions=False) as client:
        invalid_key = str(uuid.uuid4())
        invalid = post(client, caller, {"kind": "text", "data": {}}, invalid_key)
        assert invalid.status_code == 422 and invalid.json()["code"] == "validation_error"
        replayed = post(client, caller, {"kind": "text", "data": {}}, invalid_key)
        assert replayed.status_code == 422 and replayed.json() == invalid.json()
        assert replayed.headers["idempotent-replayed"] == "true"

        headers = {**caller.headers, "Idempotency-Key": str(uuid.uuid4())}
        assert client.post("/v1/explodes-once", headers=headers).status_code == 500
        retried = client.post("/v1/explodes-once", headers=headers)
        assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
        assert client.post("/v1/explodes-once", headers=headers).json() == {"attempt": 2}
    assert len(calls) == 2


def test_a_5xx_response_is_not_stored(backend):
    """A 5xx the app answers (not only an exception) leaves the key free for the retry."""
    caller = new_caller(backend)
    app = create_app(settings_for(backend))
    calls = []

    @app.post("/v1/flaky")
    async def flaky() -> JSONResponse:
        calls.append(1)
        return JSONResponse({"attempt": len(calls)}, status_code=503 if len(calls) == 1 else 201)

    with TestClient(app) as client:
        headers = {**caller.headers, "Idempotency-Key": str(uuid.uuid4())}
        assert client.post("/v1/flaky", json={}, headers=headers).status_code == 503
        assert client.post("/v1/flaky", json={}, headers=headers).json() == {"attempt": 2}
        replay = client.post("/v1/flaky", json={}, headers=headers)
        assert replay.status_code == 201 and replay.json() == {"attempt": 2}
        assert len(calls) == 2


def records(backend, key: str) -> list[IdempotencyRecord]:
    engine = create_sync_engine(backend.settings)
    try:
        with sync_sessionmaker(engine)() as session:
            return list(session.scalars(select(IdempotencyRecord).where(IdempotencyRecord.key == key)))
    finally:
        engine.dispose()


def age_records(backend, key: str, by: timedelta) -> None:
    engine = create_sync_engine(backend.settings)
    with sync_sessionmaker(engine).begin() as session:
        session.execute(
            update(IdempotencyRecord).where(IdempotencyRecord.key == key).values(created_at=utcnow() - by)
        )
    engine.dispose()


def test_keys_expire(gateway, backend):
    caller = new_caller(backend)
    key = str(uuid.uuid4())
    first = post(gateway, caller, TEXT, key)
    assert post(gateway, caller, TEXT, key).json()["id"] == first.json()["id"]
    age_records(backend, key, timedelta(seconds=backend.settings.idempotency_ttl_seconds + 60))
    later = post(gateway, caller, {**TEXT, "title": "a new request may reuse an expired key"}, key)
    assert later.status_code == 202 and later.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in later.headers
    assert len(records(backend, key)) == 1


def test_a_request_that_died_in_flight_does_not_hold_its_key_for_ever(gateway, backend):
    caller = new_caller(backend)
    key = str(uuid.uuid4())
    assert post(gateway, caller, TEXT, key).status_code == 202
    # What a gateway killed mid-request leaves behind: a claimed key with no response.
    engine = create_sync_engine(backend.settings)
    with sync_sessionmaker(engine).begin() as session:
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == key)
            .values(
                status_code=None, response_headers=None, response_body=None, created_at=utcnow() - timedelta(seconds=30)
            )
        )
    engine.dispose()
    assert post(gateway, caller, TEXT, key).status_code == 409  # recent: it may still be running
    age_records(backend, key, timedelta(minutes=10))
    taken_over = post(gateway, caller, TEXT, key)
    assert taken_over.status_code == 202 and "idempotent-replayed" not in taken_over.headers
    assert [r.status_code for r in records(backend, key)] == [202]


def test_unauthenticated_and_invalid_keys_store_nothing(gateway, backend, alice):
    key = str(uuid.uuid4())
    response = gateway.post(
        "/v1/qrcodes", json=TEXT, headers={"Authorization": "Bearer qrf_00000000_nope", "Idempotency-Key": key}
    )
    assert response.status_code == 401
    assert records(backend, key) == []
    too_long = post(gateway, alice, TEXT, "k" * 256)
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "Idempotency-Key"


def test_a_revoked_key_gets_401_not_its_stored_response(gateway, backend):
    from app.identity.service import revoke_api_key

    caller = new_caller(backend)
    key = str(uuid.uuid4())
    assert post(gateway, caller, TEXT, key).status_code == 202
    engine = create_sync_engine(backend.settings)
    with sync_sessionmaker(engine).begin() as session:
        assert revoke_api_key(session, caller.key.split("_")[1])
    engine.dispose()
    retry = post(gateway, caller, TEXT, key)
    assert retry.status_code == 401 and retry.json()["code"] == "unauthorized"


# --- body size ---------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(backend):
    caller = new_caller(backend)
    with client_for(backend, max_body_bytes=2048) as client:
        big = {"kind": "text", "data": {"text": "x" * 2100}}
        response = client.post("/v1/qrcodes", json=big, headers={**caller.headers, "Idempotency-Key": "big"})
        assert response.status_code == 413
        assert response.json()["code"] == "too_large" and "2048" in response.json()["message"]
        # No Content-Length: the limit is counted as the body streams in.
        chunked = client.post(
            "/v1/qrcodes",
            content=iter([b'{"kind": "text", "data": {"text": "', b"x" * 2100, b'"}}']),
            headers={**caller.headers, "Content-Type": "application/json", "Idempotency-Key": "chunked"},
        )
        assert "content-length" not in chunked.request.headers
        assert chunked.status_code == 413 and chunked.json()["code"] == "too_large"
        assert codes_in(client, caller) == []
        assert records(backend, "chunked") == []
        fits = {"kind": "text", "data": {"text": "x" * 1800}}
        assert client.post("/v1/qrcodes", json=fits, headers=caller.headers).status_code == 202


@contextmanager
def served(app) -> Iterator[str]:
    """A real uvicorn server in a thread: real chunked transfer encoding, not the TestClient's."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_streamed_body_is_cut_off_at_the_limit(backend):
    caller = new_caller(backend)

    def chunks() -> Iterator[bytes]:
        yield b'{"kind": "text", "data": {"text": "'
        for _ in range(200):  # 200 KiB in all, far past the limit
            yield b"x" * 1024
        yield b'"}}'

    with served(create_app(settings_for(backend, max_body_bytes=4096))) as url:
        with httpx.Client(base_url=url, timeout=10) as http:
            response = http.post(
                "/v1/qrcodes", content=chunks(), headers={**caller.headers, "Content-Type": "application/json"}
            )
            assert response.status_code == 413 and response.json()["code"] == "too_large"
            assert http.get("/v1/qrcodes", headers=caller.headers).json()["items"] == []


# --- CORS --------------------------------------------------------------------------------------------


def preflight(client: TestClient, origin: str) -> httpx.Response:
    return client.options(
        "/v1/qrcodes",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )


def test_cors_is_off_unless_configured(gateway, alice):
    assert "access-control-allow-origin" not in preflight(gateway, "https://app.example.com").headers
    response = gateway.get("/v1/qrcodes", headers={**alice.headers, "Origin": "https://app.example.com"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_cors_allows_the_configured_origins(backend):
    caller = new_caller(backend)
    origins = "https://app.example.com, https://admin.example.com/"
    with client_for(backend, cors_origins=origins, rate_limit="100/minute") as client:
        allowed = preflight(client, "https://admin.example.com")
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://admin.example.com"
        assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
        assert "POST" in allowed.headers["access-control-allow-methods"]
        refused = preflight(client, "https://evil.example.net")
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers

        response = client.get("/v1/qrcodes", headers={**caller.headers, "Origin": "https://app.example.com"})
        assert response.headers["access-control-allow-origin"] == "https://app.example.com"
        exposed = response.headers["access-control-expose-headers"].lower()
        assert "ratelimit-remaining" in exposed and "location" in exposed and "retry-after" in exposed
        assert "access-control-allow-credentials" not in response.headers


# --- security headers ---------------------------------------------------------------------------------


def csp_directives(header: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in header.split(";")) if d}


def test_the_docs_page_has_security_headers_and_a_csp_it_can_live_with(gateway):
    docs = gateway.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["x-content-type-options"] == "nosniff"
    assert docs.headers["x-frame-options"] == "DENY"
    assert docs.headers["referrer-policy"] == "no-referrer"
    csp = csp_directives(docs.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    # Every script the page has may run, and nothing else: its assets from this origin, its inline
    # bootstrap by hash (computed here independently), no 'unsafe-inline' or 'unsafe-eval'.
    assert "'self'" in csp["script-src"]
    for src in re.findall(r'<script[^>]*\bsrc="([^"]+)"', docs.text):
        assert src.startswith("/docs-assets/")
    inline = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    assert inline, "the page bootstraps Swagger UI inline"
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp["script-src"]
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    for href in re.findall(r'<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"', docs.text):
        assert href.startswith("/docs-assets/") and "'self'" in csp["style-src"]
    assert "'self'" in csp["connect-src"]  # the spec and "try it out"
    assert "data:" in csp["img-src"]  # Swagger UI's icons are data: URIs in its CSS

    # nosniff means browsers trust the declared type: the assets must declare the right ones.
    js = gateway.get("/docs-assets/swagger-ui-bundle.js")
    assert js.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert js.headers["x-content-type-options"] == "nosniff"
    assert gateway.get("/docs-assets/swagger-ui.css").headers["content-type"].startswith("text/css")


def test_nosniff_everywhere_and_a_strict_csp_on_any_other_html(backend, alice):
    app = create_app(settings_for(backend))

    @app.get("/an-html-error")
    async def an_html_error() -> HTMLResponse:
        return HTMLResponse("<h1>Bad gateway</h1><script>alert(document.cookie)</script>", status_code=502)

    with TestClient(app) as client:
        page = client.get("/an-html-error")
        assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"
        csp = csp_directives(page.headers["content-security-policy"])
        assert csp["default-src"] == ["'none'"] and "script-src" not in csp  # its inline script may not run
        for response in (
            client.get("/healthz"), client.get("/v1/qrcodes", headers=alice.headers), client.get("/v2/nothing")
        ):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert "content-security-policy" not in response.headers  # JSON: nothing to frame or run


# --- /metrics ----------------------------------------------------------------------------------------


def test_metrics_ask_for_the_token_when_one_is_set(backend):
    with client_for(backend, metrics_token="s3cret-token") as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.json()["code"] == "unauthorized"
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "qrflow_" not in refused.text
        served = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert served.status_code == 200
        assert "qrflow_http_requests_total" in served.text


def test_production_will_not_serve_metrics_without_a_token(backend):
    with pytest.raises(RuntimeError, match="QRFLOW_METRICS_TOKEN"):
        create_app(settings_for(backend, environment="production"))
    create_app(settings_for(backend, environment="production", metrics_token="s3cret-token"))
