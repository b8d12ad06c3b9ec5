"""The create → render → fetch flow through the real gateway, a real worker, Redis and each database."""

from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image

from tests.conftest import wait_until_rendered
from tests.decoding import decode_png, decode_svg

EVERY_KIND = {
    "url": {"url": "https://example.com/spring?utm_source=poster"},
    "text": {"text": "Grüße aus Köln ✓ 日本"},
    "wifi": {"ssid": "Café; Guest", "password": "pa:ss,word", "security": "WPA", "hidden": True},
    "vcard": {"name": "Ada Lovelace", "phone": "+44 20 7946 0000", "email": "ada@example.com", "org": "Engines, Ltd"},
    "email": {"to": "hello@example.com", "subject": "Hi there", "body": "a & b"},
    "sms": {"number": "+1 555 0100", "text": "JOIN"},
    "phone": {"number": "+49 30 1234567"},
    "geo": {"lat": 52.520008, "lng": 13.404954},
}
STANDARD_PREFIX = {
    "wifi": "WIFI:", "vcard": "BEGIN:VCARD\r\nVERSION:3.0\r\n", "email": "mailto:", "sms": "SMSTO:", "phone": "tel:",
    "geo": "geo:",
}


def create(gateway, caller, body: dict, **kwargs):
    return gateway.post("/v1/qrcodes", json=body, headers=caller.headers, **kwargs)


def created(gateway, caller, body: dict) -> dict:
    response = create(gateway, caller, body)
    assert response.status_code == 202, response.text
    return response.json()


def count_codes(gateway, caller) -> int:
    return len(gateway.get("/v1/qrcodes?limit=200", headers=caller.headers).json()["items"])


@pytest.mark.parametrize("kind", EVERY_KIND)
def test_every_kind_renders_to_images_that_decode_to_its_content(gateway, alice, kind):
    body = {"kind": kind, "data": EVERY_KIND[kind]}
    response = create(gateway, alice, {**body, "dynamic": False} if kind == "url" else body)
    assert response.status_code == 202, response.text
    code = response.json()
    assert response.headers["location"] == f"/v1/qrcodes/{code['id']}"
    assert code["status"] == "pending"
    assert code["content"].startswith(STANDARD_PREFIX.get(kind, ""))

    code = wait_until_rendered(gateway, alice, code["id"])
    assert code["status"] == "ready", code

    png = gateway.get(code["images"]["png"], headers=alice.headers)
    assert png.headers["content-type"] == "image/png"
    assert decode_png(png.content) == [code["content"]]
    svg = gateway.get(code["images"]["svg"], headers=alice.headers)
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert decode_svg(svg.content) == [code["content"]]
    pdf = gateway.get(code["images"]["pdf"], headers=alice.headers)
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    eps = gateway.get(code["images"]["eps"], headers=alice.headers)
    assert eps.headers["content-type"] == "application/postscript" and eps.content.startswith(b"%!PS")


def test_dynamic_code_encodes_its_short_link_and_redirects_to_the_target(gateway, alice):
    slug = f"spring-{uuid.uuid4().hex[:8]}"
    code = created(gateway, alice, {"kind": "url", "data": {"url": "https://example.com/a"}, "slug": slug})
    assert code["dynamic"] is True
    assert code["content"] == code["short_url"] == f"http://qr.test/r/{slug}"
    assert code["target_url"] == "https://example.com/a"

    redirect = gateway.get(f"/r/{slug}", follow_redirects=False)
    assert redirect.status_code == 302
    assert redirect.headers["location"] == "https://example.com/a"
    assert redirect.headers["cache-control"] == "no-store"
    assert gateway.head(f"/r/{slug}", follow_redirects=False).status_code == 302

    ready = wait_until_rendered(gateway, alice, code["id"])
    before = gateway.get(ready["images"]["png"], headers=alice.headers)
    patched = gateway.patch(
        f"/v1/qrcodes/{code['id']}", json={"target_url": "https://example.com/b"}, headers=alice.headers
    )
    assert patched.status_code == 200 and patched.json()["target_url"] == "https://example.com/b"
    assert gateway.get(f"/r/{slug}", follow_redirects=False).headers["location"] == "https://example.com/b"
    after = gateway.get(ready["images"]["png"], headers=alice.headers)
    assert after.headers["etag"] == before.headers["etag"] and after.content == before.content


def test_unknown_slug_is_404(gateway):
    assert gateway.get("/r/no-such-slug", follow_redirects=False).status_code == 404


def test_style_is_applied(gateway, alice):
    code = created(gateway, alice, {
        "kind": "text", "data": {"text": "styled"},
        "style": {"error": "h", "scale": 4, "border": 1, "dark": "#1a237eff", "light": "transparent"},
    })
    # The optional fields (module colours, logo) are there too, null.
    given = {name: value for name, value in code["style"].items() if value is not None}
    assert given == {"error": "H", "scale": 4, "border": 1, "dark": "#1a237eff", "light": "transparent", "micro": False}
    code = wait_until_rendered(gateway, alice, code["id"])
    png = gateway.get(code["images"]["png"], headers=alice.headers).content
    image = Image.open(io.BytesIO(png))
    assert image.width % 4 == 0  # whole modules of 4 px
    assert decode_png(png) == ["styled"]


def test_micro_code(gateway, alice):
    code = created(
        gateway, alice, {"kind": "text", "data": {"text": "MICRO 42"}, "style": {"micro": True, "error": "L"}}
    )
    assert code["style"]["border"] == 2
    code = wait_until_rendered(gateway, alice, code["id"])
    assert decode_png(gateway.get(code["images"]["png"], headers=alice.headers).content) == ["MICRO 42"]


def test_image_caching_and_scale_override(gateway, alice):
    code = created(gateway, alice, {"kind": "text", "data": {"text": "cache me"}, "style": {"scale": 10}})
    code = wait_until_rendered(gateway, alice, code["id"])
    url = code["images"]["png"]
    first = gateway.get(url, headers=alice.headers)
    assert first.status_code == 200
    assert "immutable" in first.headers["cache-control"]
    etag = first.headers["etag"]
    assert gateway.get(url, headers={**alice.headers, "If-None-Match": etag}).status_code == 304

    stored = Image.open(io.BytesIO(first.content))
    scaled = gateway.get(f"{url}?scale=3", headers=alice.headers)
    assert scaled.status_code == 200 and scaled.headers["etag"] != etag
    image = Image.open(io.BytesIO(scaled.content))
    assert (image.width, image.height) == (stored.width * 3 // 10, stored.height * 3 // 10)
    assert decode_png(scaled.content) == ["cache me"]

    for bad in ("0", "51", "x"):
        response = gateway.get(f"{url}?scale={bad}", headers=alice.headers)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "scale"
    svg_scaled = gateway.get(code["images"]["svg"] + "?scale=3", headers=alice.headers)
    assert svg_scaled.status_code == 422 and "PNG" in svg_scaled.json()["message"]
    assert gateway.get(f"/v1/qrcodes/{code['id']}/image.gif", headers=alice.headers).status_code == 404


def test_pending_image_is_409_with_retry_after(gateway, alice, backend):
    """A row the worker has not reached yet (inserted directly, so no worker can race the assertion)."""
    from sqlalchemy import select

    from app.identity.models import Workspace
    from app.kit.db import create_sync_engine, sync_sessionmaker
    from app.qrcodes.models import QRCode

    engine = create_sync_engine(backend.settings)
    with sync_sessionmaker(engine).begin() as session:
        workspace = session.scalar(select(Workspace).where(Workspace.name == alice.workspace))
        style = {"error": "M", "scale": 10, "border": 4, "dark": "#000000", "light": "#ffffff", "micro": False}
        code = QRCode(workspace_id=workspace.id, kind="text", data={"text": "x"}, content="x", style=style)
        session.add(code)
    engine.dispose()
    response = gateway.get(f"/v1/qrcodes/{code.id}/image.png", headers=alice.headers)
    assert response.status_code == 409
    assert response.headers["retry-after"] == "1"
    assert response.json()["code"] == "not_ready"


def test_list_paginates_newest_first_and_filters(gateway, alice):
    tag = f"page-{uuid.uuid4().hex[:6]}"
    ids = [
        created(gateway, alice, {"kind": "text", "data": {"text": f"item {i}"}, "tags": [tag, "common"]})["id"]
        for i in range(5)
    ]
    created(gateway, alice, {"kind": "phone", "data": {"number": "+1 555 0101"}, "tags": [tag]})

    seen, cursor = [], None
    while True:
        query = f"/v1/qrcodes?tag={tag}&kind=text&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = gateway.get(query, headers=alice.headers).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    phones = gateway.get(f"/v1/qrcodes?tag={tag}&kind=phone", headers=alice.headers).json()["items"]
    assert [p["kind"] for p in phones] == ["phone"]

    bad = gateway.get("/v1/qrcodes?cursor=garbage!", headers=alice.headers)
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"  # one code for every 422 (#14)
    assert gateway.get("/v1/qrcodes?limit=0", headers=alice.headers).status_code == 422
    assert gateway.get("/v1/qrcodes?kind=nope", headers=alice.headers).status_code == 422


def test_patch_title_and_tags(gateway, alice):
    code = created(gateway, alice, {"kind": "text", "data": {"text": "patch me"}, "title": "Old", "tags": ["x"]})
    response = gateway.patch(
        f"/v1/qrcodes/{code['id']}", json={"title": "New", "tags": ["y", "z", "y"]}, headers=alice.headers
    )
    assert response.status_code == 200
    assert response.json()["title"] == "New" and response.json()["tags"] == ["y", "z"]
    static = gateway.patch(
        f"/v1/qrcodes/{code['id']}", json={"target_url": "https://example.com"}, headers=alice.headers
    )
    assert static.status_code == 422 and static.json()["errors"][0]["field"] == "target_url"
    unknown_field = gateway.patch(f"/v1/qrcodes/{code['id']}", json={"content": "hack"}, headers=alice.headers)
    assert unknown_field.status_code == 422


def test_delete_hides_the_code_and_its_link_answers_410(gateway, alice):
    code = created(gateway, alice, {"kind": "url", "data": {"url": "https://example.com/bye"}})
    assert gateway.delete(f"/v1/qrcodes/{code['id']}", headers=alice.headers).status_code == 204
    assert gateway.get(f"/v1/qrcodes/{code['id']}", headers=alice.headers).status_code == 404
    assert gateway.delete(f"/v1/qrcodes/{code['id']}", headers=alice.headers).status_code == 404
    assert gateway.get(f"/r/{code['slug']}", follow_redirects=False).status_code == 410
    # The slug stays reserved: a printed code never starts leading somewhere else.
    again = create(gateway, alice, {"kind": "url", "data": {"url": "https://example.com/other"}, "slug": code["slug"]})
    assert again.status_code == 409


def test_health_and_docs(gateway):
    assert gateway.get("/healthz").json() == {"status": "ok"}
    ready = gateway.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok" and ready.json()["broker"] == "ok"
    spec = gateway.get("/openapi.json").json()
    create_op = spec["paths"]["/v1/qrcodes"]["post"]
    assert create_op["requestBody"]["content"]["application/json"]["examples"]
    assert "202" in create_op["responses"]
    # /docs can authorise with an API key: every /v1 operation declares the bearer scheme.
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    v1_operations = [op for path, ops in spec["paths"].items() if path.startswith("/v1") for op in ops.values()]
    assert v1_operations and all(op.get("security") == [{"HTTPBearer": []}] for op in v1_operations)
    docs = gateway.get("/docs")
    assert docs.status_code == 200
    # Served from this machine: the page must work without internet access.
    assert "cdn" not in docs.text and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert gateway.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    metrics = gateway.get("/metrics").text
    assert 'qrflow_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics


def test_request_id_is_echoed(gateway):
    assert gateway.get("/healthz", headers={"X-Request-ID": "trace-me-123"}).headers["x-request-id"] == "trace-me-123"
    assert len(gateway.get("/healthz").headers["x-request-id"]) == 32
