"""Batches through the real gateway, a real worker, Redis and each database: create from CSV and JSON,
refusal of bad rows (whole or partial), progress, the archive read back with zxing-cpp, workspaces,
scopes and Idempotency-Key."""

from __future__ import annotations

import io
import uuid

from tests.decoding import decode_png, decode_svg
from tests.integration.batch_helpers import (
    CSV,
    csv_body,
    mixed_rows,
    post_batch,
    read_archive,
    table_counts,
    wait_until_finished,
)

# --- the flow ------------------------------------------------------------------------------------------


def test_a_csv_batch_of_1000_rows_completes_and_every_image_decodes_to_its_manifest_content(gateway, alice):
    header, rows = mixed_rows(1000, f"big-{uuid.uuid4().hex[:6]}")
    response = post_batch(gateway, alice, csv_body(header, rows), "?formats=png")
    assert response.status_code == 202, response.text
    batch = response.json()
    assert response.headers["location"] == f"/v1/batches/{batch['id']}"
    assert (batch["status"], batch["total"], batch["pending"], batch["source"]) == ("pending", 1000, 1000, "csv")

    batch = wait_until_finished(gateway, alice, batch["id"])
    assert (batch["status"], batch["done"], batch["failed"], batch["pending"], batch["errors"]) == (
        "done", 1000, 0, 0, []
    )
    assert batch["finished_at"] is not None

    archive, manifest = read_archive(gateway, alice, batch)
    images = [name for name in archive.namelist() if name.endswith(".png")]
    assert len(images) == 1000 and len(archive.namelist()) == 1001
    assert [int(line["row"]) for line in manifest] == list(range(2, 1002))  # CSV lines, the header is 1
    assert {line["status"] for line in manifest} == {"ready"}
    for line in manifest:
        assert decode_png(archive.read(line["png_file"])) == [line["content"]], line
    urls = [line for line in manifest if line["kind"] == "url"]
    assert all(line["short_url"] == line["content"] and line["target_url"].startswith("https://") for line in urls)
    code = gateway.get(f"/v1/qrcodes/{manifest[0]['id']}", headers=alice.headers).json()
    assert code["title"] == rows[0][8] and code["tags"] == rows[0][9].split(";")


def test_a_json_batch_in_two_formats(gateway, alice):
    items = [
        {"kind": "text", "data": {"text": "first"}},
        {"kind": "vcard", "data": {"name": "Ada Lovelace", "title": "Countess"}, "title": "Ada's card"},
        {
            "kind": "url", "data": {"url": "https://example.com/x"}, "dynamic": False,
            "style": {"error": "H", "scale": 4},
        },
    ]
    response = post_batch(gateway, alice, {"items": items, "formats": ["svg", "png"]})
    assert response.status_code == 202, response.text
    batch = wait_until_finished(gateway, alice, response.json()["id"])
    assert (batch["source"], batch["formats"], batch["done"]) == ("json", ["svg", "png"], 3)
    archive, manifest = read_archive(gateway, alice, batch)
    assert sorted(archive.namelist()) == [
        "00001.png", "00001.svg", "00002.png", "00002.svg", "00003.png", "00003.svg", "manifest.csv"
    ]
    assert list(manifest[0]) == [
        "row", "id", "kind", "status", "content", "short_url", "target_url", "title", "error", "svg_file", "png_file"
    ]
    for line in manifest:
        svg, png = archive.read(line["svg_file"]), archive.read(line["png_file"])
        assert decode_svg(svg) == decode_png(png) == [line["content"]]
    assert manifest[2]["content"] == "https://example.com/x" and manifest[2]["short_url"] == ""
    assert manifest[1]["title"] == "Ada's card" and "TITLE:Countess" in manifest[1]["content"]


def test_csv_columns_name_fields_of_the_request_its_data_and_its_style(gateway, alice):
    body = csv_body(
        ["kind", "name", "data.title", "title", "text", "scale", "style.error", "dynamic", "url", "slug", "tags"],
        [
            ["vcard", "Grace Hopper", "Rear Admiral", "Grace", "", "", "", "", "", "", ""],
            ["text", "", "", "", "hello", "3", "q", "", "", "", " a ; b ;"],
            ["url", "", "", "", "", "", "", "false", "https://example.com/s", "", ""],
        ],
    )
    response = post_batch(gateway, alice, body)
    assert response.status_code == 202, response.text
    wait_until_finished(gateway, alice, response.json()["id"])
    batch = gateway.get(f"/v1/batches/{response.json()['id']}", headers=alice.headers).json()
    _, manifest = read_archive(gateway, alice, batch)
    vcard, text, url = (gateway.get(f"/v1/qrcodes/{line['id']}", headers=alice.headers).json() for line in manifest)
    assert (vcard["title"], vcard["data"]["title"]) == ("Grace", "Rear Admiral")
    assert (text["style"]["scale"], text["style"]["error"], text["tags"]) == (3, "Q", ["a", "b"])
    assert (url["dynamic"], url["content"]) == (False, "https://example.com/s")


# --- refusals ------------------------------------------------------------------------------------------


def test_invalid_rows_refuse_the_whole_batch_naming_each_row(gateway, alice, backend):
    before = table_counts(backend)
    body = csv_body(
        ["kind", "url", "text", "ssid", "password"],
        [
            ["url", "https://example.com/ok", "", "", ""],
            ["url", "ftp://example.com/no", "", "", ""],  # line 3
            ["text", "", "fine", "", ""],
            ["wifi", "", "", "Cafe", ""],  # line 5: WPA needs a password
            ["sms", "", "", "", ""],  # line 6: its number is missing
            ["text", "https://example.com", "x", "", ""],  # line 7: url does not apply to text
            ["nope", "", "", "", ""],  # line 8
        ],
    )
    response = post_batch(gateway, alice, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "validation_error"
    assert [(e["row"], e["field"]) for e in error["errors"]] == [
        (3, "url"), (5, "data"), (6, "number"), (7, "url"), (8, "kind"),
    ]
    assert "row 3: url:" in error["message"] and "nothing was created" in error["message"]
    assert table_counts(backend) == before


def test_json_rows_are_numbered_from_one_and_name_dotted_fields(gateway, alice, backend):
    before = table_counts(backend)
    items = [
        {"kind": "text", "data": {"text": "ok"}},
        {"kind": "text", "data": {"text": "x" * 3000}},  # too long for a QR code
        "not an object",
        {"kind": "geo", "data": {"lat": 91, "lng": 0}, "style": {"scale": 0}},
        {"kind": "text", "data": {"text": "x"}, "extra": 1},
    ]
    response = post_batch(gateway, alice, {"items": items})
    assert response.status_code == 422
    assert [(e["row"], e["field"], e["type"]) for e in response.json()["errors"]] == [
        (2, "data", "payload_too_long"),
        (3, "item", "model_type"),
        (4, "style.scale", "greater_than_equal"),
        (4, "data.lat", "less_than_equal"),
        (5, "extra", "extra_forbidden"),
    ]
    assert table_counts(backend) == before


def test_partial_creates_the_valid_rows_and_reports_the_rest(gateway, alice):
    body = csv_body(
        ["kind", "text", "url"],
        [["text", "kept 1", ""], ["text", "", ""], ["url", "", "javascript:alert(1)"], ["text", "kept 2", ""]],
    )
    response = post_batch(gateway, alice, body, "?partial=true")
    assert response.status_code == 202, response.text
    batch = response.json()
    assert (batch["total"], batch["rejected"], batch["errors_total"]) == (2, 2, 2)
    assert [(e["row"], e["field"]) for e in batch["errors"]] == [(3, "text"), (4, "url")]

    batch = wait_until_finished(gateway, alice, batch["id"])
    assert (batch["status"], batch["done"], batch["rejected"]) == ("done", 2, 2)
    archive, manifest = read_archive(gateway, alice, batch)
    assert [(line["row"], line["status"]) for line in manifest] == [
        ("2", "ready"), ("3", "rejected"), ("4", "rejected"), ("5", "ready")
    ]
    assert manifest[1]["error"].startswith("text: ") and manifest[1]["png_file"] == ""
    assert decode_png(archive.read(manifest[3]["png_file"])) == ["kept 2"]


def test_partial_with_no_valid_row_creates_nothing(gateway, alice, backend):
    before = table_counts(backend)
    response = post_batch(gateway, alice, csv_body(["kind", "text"], [["text", ""]]), "?partial=true")
    assert response.status_code == 422 and "no row is valid" in response.json()["message"]
    assert table_counts(backend) == before


def test_slugs_taken_or_asked_for_twice_are_row_errors(gateway, alice):
    taken = f"taken-{uuid.uuid4().hex[:8]}"
    first = gateway.post(
        "/v1/qrcodes", json={"kind": "url", "data": {"url": "https://e.com"}, "slug": taken}, headers=alice.headers
    )
    assert first.status_code == 202
    twice = f"twice-{uuid.uuid4().hex[:8]}"
    body = csv_body(
        ["kind", "url", "slug"],
        [["url", "https://e.com/1", taken], ["url", "https://e.com/2", twice], ["url", "https://e.com/3", twice]],
    )
    response = post_batch(gateway, alice, body)
    assert response.status_code == 422
    assert [(e["row"], e["field"], e["type"]) for e in response.json()["errors"]] == [
        (2, "slug", "slug_taken"), (4, "slug", "slug_taken")
    ]

    response = post_batch(gateway, alice, body, "?partial=true")
    assert response.status_code == 202 and response.json()["total"] == 1
    assert gateway.get(f"/r/{twice}", follow_redirects=False).headers["location"] == "https://e.com/2"


def test_whole_request_faults(gateway, alice):
    def refused(response, status: int, field: str) -> dict:
        assert response.status_code == status, response.text
        body = response.json()
        assert body["errors"][0]["field"] == field, body
        return body

    refused(post_batch(gateway, alice, b"", headers={}), 422, "header")
    refused(post_batch(gateway, alice, b"url,text\r\nx,y\r\n"), 422, "kind")
    body = refused(post_batch(gateway, alice, b"kind,colour,text,text\r\n"), 422, "colour")
    assert [e["field"] for e in body["errors"]] == ["colour", "text"] and body["errors"][0]["row"] == 1
    refused(post_batch(gateway, alice, b"kind,text\r\ntext,\xff\r\n"), 422, "body")
    refused(post_batch(gateway, alice, {"items": []}), 422, "items")
    one_text = [{"kind": "text", "data": {"text": "a"}}]
    refused(post_batch(gateway, alice, {"items": one_text, "formats": ["gif"]}), 422, "formats")
    refused(post_batch(gateway, alice, {"items": one_text, "formats": ["png"]}, "?formats=svg"), 422, "formats")
    refused(post_batch(gateway, alice, b"kind,text\r\ntext,a\r\n", "?formats=png,tiff"), 422, "formats")
    json_headers = {**alice.headers, "Content-Type": "application/json"}
    refused(gateway.post("/v1/batches", content=b"{", headers=json_headers), 422, "body")
    csv_file = {"file": ("a.csv", b"kind,text\r\ntext,a\r\n")}
    refused(gateway.post("/v1/batches", files=csv_file, headers=alice.headers), 415, "Content-Type")
    too_many = b"kind,text\r\n" + b"".join(b"text,%d\r\n" % i for i in range(10_001))
    refused(post_batch(gateway, alice, too_many), 422, "body")


def test_a_batch_may_be_larger_than_other_requests(gateway, alice):
    """QRFLOW_MAX_BODY_BYTES (1 MiB) does not apply to batches; their own limit (16 MiB) does."""
    body = {"items": [{"kind": "text", "data": {"text": "x" * (2 * 1024 * 1024)}}]}
    assert gateway.post("/v1/qrcodes", json=body["items"][0], headers=alice.headers).status_code == 413
    response = post_batch(gateway, alice, body)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "data.text"
    body["items"][0]["data"]["text"] *= 8
    assert post_batch(gateway, alice, body).status_code == 413


# --- ownership, scopes, idempotency ------------------------------------------------------------------


def test_another_workspace_sees_no_batch(gateway, alice, bob):
    batch = post_batch(gateway, alice, csv_body(["kind", "text"], [["text", "alice's"]])).json()
    for url in (f"/v1/batches/{batch['id']}", batch["archive"]):
        response = gateway.get(url, headers=bob.headers)
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert gateway.get(f"/v1/batches/{uuid.uuid4()}", headers=alice.headers).status_code == 404


def test_reading_needs_read_scope_and_creating_write_scope(gateway, alice, alice_reader):
    body = csv_body(["kind", "text"], [["text", "scoped"]])
    assert post_batch(gateway, alice_reader, body).status_code == 403
    batch = post_batch(gateway, alice, body).json()
    assert gateway.get(f"/v1/batches/{batch['id']}", headers=alice_reader.headers).status_code == 200
    assert gateway.post("/v1/batches", content=body, headers=CSV).status_code == 401


def test_a_retry_with_the_same_idempotency_key_creates_nothing_new(gateway, alice, backend):
    body = csv_body(*mixed_rows(20, f"idem-{uuid.uuid4().hex[:6]}"))
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = post_batch(gateway, alice, body, headers=key)
    assert first.status_code == 202
    after_first = table_counts(backend)
    retry = post_batch(gateway, alice, body, headers=key)
    assert retry.status_code == 202 and retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json() and retry.headers["location"] == first.headers["location"]
    assert table_counts(backend) == after_first
    assert post_batch(gateway, alice, body + b"text,another\r\n", headers=key).status_code == 422  # key reused
    wait_until_finished(gateway, alice, first.json()["id"])


def test_archive_is_409_until_finished_and_a_deleted_code_is_left_out(gateway, alice, backend):
    """Codes no worker will render (rows inserted as the gateway would, the chunk messages never sent):
    the archive waits; then the worker renders all but one, which is deleted meanwhile."""
    from tests.integration.batch_helpers import batch_code_ids, unpublished_batch
    from workers.celery_app import celery_app

    batch = unpublished_batch(gateway, alice, [["text", f"held {i}"] for i in range(3)])
    response = gateway.get(batch["archive"], headers=alice.headers)
    assert response.status_code == 409 and response.headers["retry-after"] == "2"
    assert response.json()["code"] == "not_ready"

    first = gateway.get(f"/v1/batches/{batch['id']}", headers=alice.headers).json()
    assert (first["status"], first["pending"]) == ("pending", 3)
    ids = [str(code_id) for code_id in batch_code_ids(backend, batch["id"])]
    assert gateway.delete(f"/v1/qrcodes/{ids[1]}", headers=alice.headers).status_code == 204
    celery_app.send_task("qrcodes.render_batch", kwargs={"event": {"batch_id": batch["id"], "code_ids": ids}})
    batch = wait_until_finished(gateway, alice, batch["id"])
    assert (batch["status"], batch["done"], batch["deleted"]) == ("done", 2, 1)
    archive, manifest = read_archive(gateway, alice, batch)
    assert [line["status"] for line in manifest] == ["ready", "deleted", "ready"]
    assert sorted(archive.namelist()) == ["00002.png", "00002.svg", "00004.png", "00004.svg", "manifest.csv"]


# --- the same codes as POST /v1/qrcodes --------------------------------------------------------------


def png_logo(colour: str = "#c62828") -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGBA", (64, 64), colour).save(out, format="PNG")
    return out.getvalue()


def upload_logo(gateway, caller) -> str:
    response = gateway.post("/v1/logos", content=png_logo(), headers={**caller.headers, "Content-Type": "image/png"})
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


# What differs between two codes made from the same request: identity, times, and a dynamic code's slug.
_OWN = ("id", "slug", "short_url", "images", "created_at", "updated_at", "rendered_at", "scans_total")


def test_a_batch_makes_the_same_codes_as_post_v1_qrcodes(gateway, alice):
    """Every documented example, made both ways: the stored codes match, and static ones draw the same
    images (their keys are their content's digest). Holds for fields and kinds added later too."""
    import copy

    from app.qrcodes.schemas import CREATE_EXAMPLES

    logo = upload_logo(gateway, alice)
    items = [copy.deepcopy(example["value"]) for example in CREATE_EXAMPLES.values()]
    for item in items:
        if item.get("style", {}).get("logo"):
            item["style"]["logo"] = logo
    singles = [gateway.post("/v1/qrcodes", json=item, headers=alice.headers) for item in items]
    assert [r.status_code for r in singles] == [202] * len(items), [r.text for r in singles if r.status_code != 202]
    response = post_batch(gateway, alice, {"items": items, "formats": ["png"]})
    assert response.status_code == 202, response.text
    batch = wait_until_finished(gateway, alice, response.json()["id"])
    _, manifest = read_archive(gateway, alice, batch)
    for single, line in zip(singles, manifest, strict=True):
        from tests.conftest import wait_until_rendered

        one = wait_until_rendered(gateway, alice, single.json()["id"])
        other = gateway.get(f"/v1/qrcodes/{line['id']}", headers=alice.headers).json()
        if one["dynamic"]:
            assert other["content"] == other["short_url"]
            one.pop("content"), other.pop("content")
        else:
            png = [gateway.get(code["images"]["png"], headers=alice.headers).content for code in (one, other)]
            assert png[0] == png[1], one["kind"]
        assert {k: v for k, v in one.items() if k not in _OWN} == {k: v for k, v in other.items() if k not in _OWN}


def test_a_row_may_use_only_its_own_workspaces_logos(gateway, alice, bob):
    mine, theirs = upload_logo(gateway, alice), upload_logo(gateway, bob)
    body = csv_body(
        ["kind", "text", "logo"],
        [["text", "own logo", mine], ["text", "their logo", theirs], ["text", "no such logo", str(uuid.uuid4())]],
    )
    response = post_batch(gateway, alice, body)
    assert response.status_code == 422
    assert [(e["row"], e["field"]) for e in response.json()["errors"]] == [(3, "logo"), (4, "logo")]
    response = post_batch(gateway, alice, body, "?partial=true&formats=png")
    assert response.status_code == 202 and response.json()["total"] == 1
    batch = wait_until_finished(gateway, alice, response.json()["id"])
    archive, manifest = read_archive(gateway, alice, batch)
    assert decode_png(archive.read(manifest[0]["png_file"])) == ["own logo"]
