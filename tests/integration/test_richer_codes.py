"""Richer codes through the real gateway, a real worker, Redis and each database: the new kinds, module
colours, and logos (upload, placement, the worker's read-back, and every refusal)."""

from __future__ import annotations

import uuid

import pytest

from app.qrcodes.logo_files import MAX_LOGO_BYTES
from app.qrcodes.readback import LOGO_TOO_LARGE
from tests.conftest import wait_until_rendered
from tests.decoding import decode_png, decode_svg
from tests.integration.test_qrcodes_api import count_codes, create, created
from tests.unit.test_logos import SVG_LOGO, png_logo

NEW_KINDS = {
    "event": {
        "summary": "Spring launch, Hall 3", "start": "2030-04-02T18:00:00+02:00", "end": "2030-04-02T21:00:00+02:00"
    },
    "mecard": {
        "name": "Lovelace,Ada", "phones": ["+44 20 7946 0000"], "email": "ada@example.com", "birthday": "1815-12-10"
    },
    "epc": {"name": "Café Société", "iban": "DE33 1002 0500 0001 1947 00", "amount": "12.50", "text": "Invoice 42"},
}
PREFIX = {"event": "BEGIN:VEVENT\r\n", "mecard": "MECARD:N:Lovelace,Ada;", "epc": "BCD\n002\n2\nSCT\n"}


def upload(gateway, caller, data: bytes, media_type: str = "image/png"):
    return gateway.post("/v1/logos", content=data, headers={**caller.headers, "Content-Type": media_type})


def uploaded(gateway, caller, data: bytes, media_type: str = "image/png") -> dict:
    response = upload(gateway, caller, data, media_type)
    assert response.status_code == 201, response.text
    return response.json()


def ready(gateway, caller, body: dict) -> dict:
    code = wait_until_rendered(gateway, caller, created(gateway, caller, body)["id"])
    assert code["status"] == "ready", code
    return code


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_new_kinds_render_to_images_that_decode_to_their_content(gateway, alice, kind):
    code = ready(gateway, alice, {"kind": kind, "data": NEW_KINDS[kind]})
    assert code["content"].startswith(PREFIX[kind])
    assert decode_png(gateway.get(code["images"]["png"], headers=alice.headers).content) == [code["content"]]
    assert decode_svg(gateway.get(code["images"]["svg"], headers=alice.headers).content) == [code["content"]]
    assert set(code["images"]) == {"png", "svg", "pdf", "eps"}


def test_epc_code_is_level_m_and_its_data_normalised(gateway, alice):
    code = ready(gateway, alice, {"kind": "epc", "data": NEW_KINDS["epc"]})
    assert code["style"]["error"] == "M"
    assert code["data"]["iban"] == "DE33100205000001194700" and code["data"]["amount"] == "12.50"
    assert code["content"].split("\n")[6:8] == ["DE33100205000001194700", "EUR12.5"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "event", "data": {**NEW_KINDS["event"], "end": "2030-04-02T17:00:00+02:00"}}, "data.end"),
        ({"kind": "event", "data": {**NEW_KINDS["event"], "start": "2030-04-02T18:00:00"}}, "data.start"),
        ({"kind": "epc", "data": {**NEW_KINDS["epc"], "iban": "DE33 1002 0500 0001 1947 01"}}, "data.iban"),
        ({"kind": "epc", "data": {**NEW_KINDS["epc"], "amount": 0}}, "data.amount"),
        ({"kind": "epc", "data": NEW_KINDS["epc"], "style": {"error": "H"}}, "style.error"),
        ({"kind": "mecard", "data": {"name": "Ada", "email": "nope"}}, "data.email"),
        ({"kind": "text", "data": {"text": "x"}, "style": {"data_dark": "#eeeeee"}}, "style.data_dark"),
        ({"kind": "text", "data": {"text": "x"}, "style": {"finder_dark": "transparent"}}, "style.finder_dark"),
        ({"kind": "text", "data": {"text": "x"}, "style": {"logo_size": 0.2}}, "style.logo_size"),
        (
            {"kind": "text", "data": {"text": "x"}, "style": {"logo": str(uuid.uuid4()), "logo_size": 0.6}},
            "style.logo_size",
        ),
        (
            {"kind": "text", "data": {"text": "x"}, "style": {"logo": str(uuid.uuid4()), "micro": True, "error": "L"}},
            "style.micro",
        ),
    ],
)
def test_invalid_richer_requests_name_the_field_and_write_nothing(gateway, alice, body, field):
    before = count_codes(gateway, alice)
    response = create(gateway, alice, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "validation_error"
    assert any(e["field"] == field for e in error["errors"]), error
    assert field in error["message"]
    assert count_codes(gateway, alice) == before


def test_epc_too_long_for_version_13_is_payload_too_long(gateway, alice):
    data = {**NEW_KINDS["epc"], "name": "名" * 70, "text": "文" * 140}
    response = create(gateway, alice, {"kind": "epc", "data": data})
    assert response.status_code == 422
    assert response.json()["code"] == "payload_too_long"
    assert "version 13" in response.json()["message"]


def test_module_colours_are_stored_applied_and_checked(gateway, alice):
    style = {"finder_dark": "#C62828", "data_dark": "#1a237e", "quiet_zone": "transparent", "light": "#fffde7"}
    code = ready(gateway, alice, {"kind": "text", "data": {"text": "colourful"}, "style": style})
    assert code["style"]["finder_dark"] == "#c62828" and code["style"]["quiet_zone"] == "transparent"
    assert code["style"]["logo"] is None
    png = gateway.get(code["images"]["png"], headers=alice.headers).content
    assert decode_png(png) == ["colourful"]
    eps = gateway.get(code["images"]["eps"], headers=alice.headers)
    assert eps.status_code == 200 and b"0.7765 0.1569 0.1569 setrgbcolor" in eps.content


# --- logos -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("media_type", "data", "size"), [("image/png", png_logo((120, 80)), (120, 80)),
                                                          ("image/svg+xml", SVG_LOGO, (100, 100))], ids=["png", "svg"])
def test_a_logo_is_uploaded_and_placed_and_the_code_reads_back(gateway, alice, media_type, data, size):
    response = upload(gateway, alice, data, media_type + ("; charset=utf-8" if "svg" in media_type else ""))
    assert response.status_code == 201, response.text
    logo = response.json()
    assert (logo["media_type"], logo["width"], logo["height"]) == (media_type, *size)
    assert response.headers["location"] == f"/v1/logos/{logo['id']}"
    assert gateway.get(f"/v1/logos/{logo['id']}", headers=alice.headers).json() == logo

    body = {"kind": "url", "data": {"url": "https://example.com/menu"}, "style": {"logo": logo["id"], "error": "L"}}
    pending = created(gateway, alice, body)
    assert pending["style"]["error"] == "H" and pending["style"]["logo_size"] == 0.25  # forced, and said so
    assert set(pending["images"]) == {"png", "svg", "pdf"}
    code = wait_until_rendered(gateway, alice, pending["id"])
    assert code["status"] == "ready", code
    assert decode_png(gateway.get(code["images"]["png"], headers=alice.headers).content) == [code["content"]]
    svg = gateway.get(code["images"]["svg"], headers=alice.headers).content
    assert decode_svg(svg) == [code["content"]] and f"data:{media_type};base64,".encode() in svg
    pdf = gateway.get(code["images"]["pdf"], headers=alice.headers)
    assert pdf.status_code == 200 and b"/Subtype /Image" in pdf.content
    eps = gateway.get(f"/v1/qrcodes/{code['id']}/image.eps", headers=alice.headers)
    assert eps.status_code == 404 and "logo" in eps.json()["message"]
    rescaled = gateway.get(code["images"]["png"] + "?scale=3", headers=alice.headers)
    assert rescaled.status_code == 422 and rescaled.json()["errors"][0]["field"] == "scale"


def test_a_logo_too_large_to_read_leaves_the_code_failed_with_the_reason(gateway, alice):
    logo = uploaded(gateway, alice, png_logo())
    body = {"kind": "text", "data": {"text": "x" * 300}, "style": {"logo": logo["id"], "logo_size": 0.5}}
    code = wait_until_rendered(gateway, alice, created(gateway, alice, body)["id"])
    assert code["status"] == "failed"
    assert code["error"] == LOGO_TOO_LARGE
    image = gateway.get(code["images"]["png"], headers=alice.headers)
    assert image.status_code == 409 and LOGO_TOO_LARGE in image.json()["message"]


def test_another_workspaces_logo_cannot_be_seen_or_used(gateway, alice, bob):
    logo = uploaded(gateway, alice, png_logo())
    assert gateway.get(f"/v1/logos/{logo['id']}", headers=bob.headers).status_code == 404
    before = count_codes(gateway, bob)
    response = create(gateway, bob, {"kind": "text", "data": {"text": "x"}, "style": {"logo": logo["id"]}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "style.logo"
    assert count_codes(gateway, bob) == before


@pytest.mark.parametrize(
    ("media_type", "data", "status", "field"),
    [
        ("image/gif", b"GIF89a", 415, "Content-Type"),
        ("application/json", b'{"logo": 1}', 415, "Content-Type"),
        ("image/png", b"this is not a png", 422, "body"),
        ("image/png", SVG_LOGO, 422, "body"),
        ("image/png", b"\x89PNG" + b"\0" * MAX_LOGO_BYTES, 413, "body"),
        ("image/svg+xml", SVG_LOGO.replace(b"</svg>", b"<script>alert(1)</script></svg>"), 422, "body"),
        ("image/svg+xml", b"", 422, "body"),
    ],
)
def test_bad_uploads_are_refused_and_store_nothing(gateway, alice, backend, media_type, data, status, field):
    before = _logo_count(backend, alice.workspace)
    response = upload(gateway, alice, data, media_type)
    assert response.status_code == status, response.text
    assert response.json()["errors"][0]["field"] == field
    assert _logo_count(backend, alice.workspace) == before


def test_a_read_key_cannot_upload(gateway, alice_reader):
    assert upload(gateway, alice_reader, png_logo()).status_code == 403


def _logo_count(backend, workspace: str) -> int:
    from sqlalchemy import func, select

    from app.identity.models import Workspace
    from app.kit.db import create_sync_engine, sync_sessionmaker
    from app.qrcodes.logos import Logo

    engine = create_sync_engine(backend.settings)
    with sync_sessionmaker(engine)() as session:
        count = session.scalar(
            select(func.count()).select_from(Logo).join(Workspace, Workspace.id == Logo.workspace_id)
            .where(Workspace.name == workspace)
        )
    engine.dispose()
    return count or 0
