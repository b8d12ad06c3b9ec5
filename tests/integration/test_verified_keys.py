"""API keys verified from memory (app/identity/verified_keys.py): a read under load makes one statement,
and a revoked key is refused at most QRFLOW_API_KEY_CACHE_SECONDS after its revocation commits."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.gateway.main import create_app
from app.identity.models import Scope
from app.identity.service import revoke_api_key
from app.kit.db import create_sync_engine, sync_sessionmaker
from app.kit.settings import Settings
from tests.conftest import Caller, _issue

CACHE_SECONDS = Settings.model_fields["api_key_cache_seconds"].default


@pytest.fixture
def cached_gateway(backend, worker) -> Iterator[TestClient]:
    settings = Settings(**{**backend.settings.model_dump(), "api_key_cache_seconds": CACHE_SECONDS})
    with TestClient(create_app(settings)) as client:
        yield client


def _statements(client: TestClient) -> list[str]:
    seen: list[str] = []
    event.listen(client.app.state.engine.sync_engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: seen.append(statement))
    return seen


def _revoke(backend, caller: Caller) -> None:
    engine = create_sync_engine(backend.settings)
    with sync_sessionmaker(engine).begin() as session:
        assert revoke_api_key(session, caller.key.split("_")[1])
    engine.dispose()


def test_the_default_bound_is_seconds():
    assert 0 < CACHE_SECONDS <= 5


def test_a_read_with_a_verified_key_is_one_statement(backend, cached_gateway):
    caller = _issue(backend.settings, f"verified-{time.monotonic_ns()}", Scope.WRITE)
    created = cached_gateway.post(
        "/v1/qrcodes", headers=caller.headers,
        json={"kind": "url", "data": {"url": "https://example.com/a"}, "dynamic": True, "tags": ["b", "a"]},
    )
    assert created.status_code == 202, created.text
    path = f"/v1/qrcodes/{created.json()['id']}"
    first = cached_gateway.get(path, headers=caller.headers)
    statements = _statements(cached_gateway)
    again = cached_gateway.get(path, headers=caller.headers)
    rendering = {"status", "error", "rendered_at", "updated_at"}  # the worker may finish meanwhile
    assert again.status_code == 200
    assert {k: v for k, v in again.json().items() if k not in rendering} == {
        k: v for k, v in first.json().items() if k not in rendering}
    assert again.json()["tags"] == ["b", "a"] and again.json()["slug"]
    # The code, its link and its tags in one statement; the key not read on the request's way (the
    # background confirmation, once a second, may run meanwhile: it reads keys by id, never by prefix).
    reads = [statement for statement in statements if "api_keys" not in statement]
    assert len(reads) == 1 and "qrcodes" in reads[0], statements
    assert not [statement for statement in statements if "api_keys.prefix" in statement], statements


def test_a_revoked_key_is_refused_within_the_bound(backend, cached_gateway):
    caller = _issue(backend.settings, f"verified-{time.monotonic_ns()}", Scope.READ)
    assert cached_gateway.get("/v1/qrcodes", headers=caller.headers).status_code == 200
    _revoke(backend, caller)
    revoked_at = time.monotonic()
    time.sleep(CACHE_SECONDS)  # a confirmation older than this is not trusted, whatever the load
    for _ in range(3):
        refused = cached_gateway.get("/v1/qrcodes", headers=caller.headers)
        assert refused.status_code == 401, (time.monotonic() - revoked_at, refused.text)
        assert refused.json()["code"] == "unauthorized"


def test_an_unknown_key_is_never_remembered(backend, cached_gateway):
    caller = _issue(backend.settings, f"verified-{time.monotonic_ns()}", Scope.READ)
    forged = caller.key[:-4] + "AAAA"
    for _ in range(2):
        assert cached_gateway.get("/v1/qrcodes", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    assert cached_gateway.get("/v1/qrcodes", headers=caller.headers).status_code == 200
