"""Every error is a 4xx JSON body with a machine-readable code and a message naming the field,
and nothing is written when a request is refused."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.test_qrcodes_api import count_codes, create, created


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"kind": "barcode", "data": {}}, "kind", "union_tag_invalid"),
        ({"data": {"text": "x"}}, "kind", "union_tag_not_found"),
        ({"kind": "url", "data": {}}, "data.url", "missing"),
        ({"kind": "url", "data": {"url": "javascript:alert(1)"}}, "data.url", "value_error"),
        ({"kind": "url", "data": {"url": "https://user:pw@example.com"}}, "data.url", "value_error"),
        ({"kind": "wifi", "data": {"ssid": "x", "security": "WPA"}}, "data", "value_error"),
        ({"kind": "email", "data": {"to": "not-an-email"}}, "data.to", "value_error"),
        ({"kind": "geo", "data": {"lat": 91, "lng": 0}}, "data.lat", "less_than_equal"),
        ({"kind": "text", "data": {"text": "x"}, "style": {"dark": "red"}}, "style.dark", "string_pattern_mismatch"),
        ({"kind": "text", "data": {"text": "x"}, "style": {"scale": 0}}, "style.scale", "greater_than_equal"),
        ({"kind": "text", "data": {"text": "x"}, "style": {"micro": True, "error": "H"}}, "style", "value_error"),
        ({"kind": "text", "data": {"text": "x"}, "colour": "blue"}, "colour", "extra_forbidden"),
        ({"kind": "url", "data": {"url": "https://example.com"}, "slug": "a b"}, "slug", "string_pattern_mismatch"),
        ({"kind": "url", "data": {"url": "https://example.com"}, "dynamic": False, "slug": "abc"}, "body", "value_error"),
    ],
)
def test_invalid_requests_name_the_field(gateway, alice, body, field, code):
    before = count_codes(gateway, alice)
    response = create(gateway, alice, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "validation_error"
    assert any(e["field"] == field and e["type"] == code for e in error["errors"]), error
    assert field in error["message"]
    assert count_codes(gateway, alice) == before


def test_payload_too_long_is_refused_before_rendering(gateway, alice):
    before = count_codes(gateway, alice)
    response = create(gateway, alice, {"kind": "text", "data": {"text": "é" * 1300}, "style": {"error": "H"}})
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "payload_too_long"
    assert error["errors"][0]["field"] == "data"
    assert "1300 bytes" in error["message"] and "1273" in error["message"]
    assert count_codes(gateway, alice) == before
    # The same text fits at level L.
    assert create(gateway, alice, {"kind": "text", "data": {"text": "é" * 1300}, "style": {"error": "L"}}).status_code == 202


def test_malformed_json_is_422(gateway, alice):
    response = gateway.post("/v1/qrcodes", content=b"{not json", headers={**alice.headers, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "json_invalid"


def test_slug_taken_is_409_and_writes_nothing(gateway, alice, bob):
    slug = f"taken-{uuid.uuid4().hex[:8]}"
    created(gateway, alice, {"kind": "url", "data": {"url": "https://example.com/1"}, "slug": slug})
    before = count_codes(gateway, bob)
    response = create(gateway, bob, {"kind": "url", "data": {"url": "https://example.com/2"}, "slug": slug})
    assert response.status_code == 409
    assert response.json()["code"] == "slug_taken" and slug in response.json()["message"]
    assert count_codes(gateway, bob) == before


def test_unknown_id_is_404(gateway, alice):
    missing = uuid.uuid4()
    for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/image.png")):
        response = gateway.request(method, f"/v1/qrcodes/{missing}{path}", headers=alice.headers, json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path)
        assert response.json()["code"] == "not_found"
    assert gateway.get("/v1/qrcodes/not-a-uuid", headers=alice.headers).status_code == 422


def test_another_workspaces_code_is_404_never_403(gateway, alice, bob):
    code = created(gateway, alice, {"kind": "url", "data": {"url": "https://example.com/private"}, "title": "A's"})
    for method, path, body in (
        ("GET", "", None),
        ("PATCH", "", {"title": "pwned"}),
        ("DELETE", "", None),
        ("GET", "/image.png", None),
    ):
        response = gateway.request(method, f"/v1/qrcodes/{code['id']}{path}", headers=bob.headers, json=body)
        assert response.status_code == 404, (method, path, response.text)
    assert code["id"] not in [c["id"] for c in gateway.get("/v1/qrcodes?limit=200", headers=bob.headers).json()["items"]]
    assert gateway.get(f"/v1/qrcodes/{code['id']}", headers=alice.headers).json()["title"] == "A's"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "Bearer"),
        ({"Authorization": "Bearer qrf_deadbeef_notthekey"}, "invalid"),
        ({"Authorization": "Bearer something-else"}, "invalid"),
    ],
)
def test_missing_or_invalid_key_is_401(gateway, headers, message):
    response = gateway.get("/v1/qrcodes", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized" and message in response.json()["message"]
    assert response.headers["www-authenticate"] == "Bearer"


def test_read_scope_cannot_write(gateway, alice_reader):
    assert gateway.get("/v1/qrcodes", headers=alice_reader.headers).status_code == 200
    response = create(gateway, alice_reader, {"kind": "text", "data": {"text": "x"}})
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden" and "write" in response.json()["message"]


def test_revoked_key_is_401(gateway, backend, alice):
    from app.db import create_sync_engine, sync_sessionmaker
    from app.identity.models import Scope
    from app.identity.service import issue_api_key, revoke_api_key

    engine = create_sync_engine(backend.settings)
    with sync_sessionmaker(engine).begin() as session:
        key = issue_api_key(session, alice.workspace, Scope.READ)
    headers = {"Authorization": f"Bearer {key}"}
    assert gateway.get("/v1/qrcodes", headers=headers).status_code == 200
    with sync_sessionmaker(engine).begin() as session:
        assert revoke_api_key(session, key.split("_")[1])
    engine.dispose()
    assert gateway.get("/v1/qrcodes", headers=headers).status_code == 401


def test_unknown_route_is_json_404(gateway):
    response = gateway.get("/v2/nothing")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
