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
        (
            {"kind": "url", "data": {"url": "https://example.com"}, "dynamic": False, "slug": "abc"},
            "body",
            "value_error",
        ),
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
    level_l = {"kind": "text", "data": {"text": "é" * 1300}, "style": {"error": "L"}}
    assert create(gateway, alice, level_l).status_code == 202


def test_malformed_json_is_422(gateway, alice):
    response = gateway.post(
        "/v1/qrcodes", content=b"{not json", headers={**alice.headers, "Content-Type": "application/json"}
    )
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
        response = gateway.request(
            method, f"/v1/qrcodes/{missing}{path}", headers=alice.headers, json={} if method == "PATCH" else None
        )
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
    bobs = gateway.get("/v1/qrcodes?limit=200", headers=bob.headers).json()["items"]
    assert code["id"] not in [c["id"] for c in bobs]
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
    from app.identity.models import Scope
    from app.identity.service import issue_api_key, revoke_api_key
    from app.kit.db import create_sync_engine, sync_sessionmaker

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


# --- found by the OpenAPI contract test (test_openapi_contract.py) ---------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"kind": "text", "data": {"text": "\xff\xfe"}}', "not UTF-8"),
        (b'{"kind": "text", "data": {"text": "x"}, "style": {"scale": 1' + b"0" * 5000 + b"}}", "too many digits"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
    ids=["invalid-utf8", "5000-digit-number", "deep-nesting"],
)
def test_undecodable_json_body_is_422_json_invalid_not_400(gateway, alice, body, message):
    """FastAPI answered these with a bare 400 (`code: error`), undocumented; they are malformed JSON."""
    code = created(gateway, alice, {"kind": "text", "data": {"text": "patch me"}})
    for method, path in (("POST", "/v1/qrcodes"), ("PATCH", f"/v1/qrcodes/{code['id']}")):
        response = gateway.request(
            method, path, content=body, headers={**alice.headers, "Content-Type": "application/json"}
        )
        assert response.status_code == 422, (method, response.text)
        error = response.json()
        assert error["code"] == "validation_error" and message in error["message"]
        assert error["errors"] == [{"field": "body", "type": "json_invalid", "message": error["errors"][0]["message"]}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "text", "data": {"text": "a\x00b"}}, "data.text"),
        ({"kind": "wifi", "data": {"ssid": "cafe\x00", "password": "espresso42"}}, "data.ssid"),
        ({"kind": "vcard", "data": {"name": "Ada", "org": "\x00"}}, "data.org"),
        ({"kind": "text", "data": {"text": "x"}, "title": "\x00"}, "title"),
        ({"kind": "text", "data": {"text": "x"}, "tags": ["ok", "n\x00l"]}, "tags.1"),
    ],
)
def test_nul_characters_are_422_on_every_backend(gateway, alice, body, field):
    """PostgreSQL's text and JSON types cannot hold U+0000: it was a 500 there and stored on SQLite."""
    before = count_codes(gateway, alice)
    response = create(gateway, alice, body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"field": field, "type": "string_nul", "message": "NUL characters (U+0000) are not allowed"}
    ]
    assert count_codes(gateway, alice) == before


def test_nul_characters_in_a_patch_are_422(gateway, alice):
    code = created(gateway, alice, {"kind": "text", "data": {"text": "x"}, "title": "before", "tags": ["a"]})
    for changes, field in (({"title": "a\x00"}, "title"), ({"tags": ["\x00"]}, "tags.0")):
        response = gateway.patch(f"/v1/qrcodes/{code['id']}", json=changes, headers=alice.headers)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field
    assert gateway.get(f"/v1/qrcodes/{code['id']}", headers=alice.headers).json()["title"] == "before"


def test_nul_in_the_tag_filter_is_422_and_in_a_slug_404(gateway, alice):
    response = gateway.get("/v1/qrcodes", params={"tag": "a\x00"}, headers=alice.headers)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "tag"
    response = gateway.get("/r/abc%00def", headers={"accept": "application/json"}, follow_redirects=False)
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_a_forged_cursor_with_a_naive_timestamp_is_422(gateway, alice):
    import base64
    import json

    token = base64.urlsafe_b64encode(json.dumps(["2026-01-01T00:00:00", str(uuid.uuid4())]).encode()).decode()
    response = gateway.get(f"/v1/qrcodes?cursor={token}", headers=alice.headers)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "cursor"
