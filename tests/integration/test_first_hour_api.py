"""What a new self-hoster tripped on in the API (issue #14), through the real gateway and a real worker on
each database."""

from __future__ import annotations

import uuid

from tests.conftest import wait_until_rendered
from tests.integration.test_qrcodes_api import create, created

URL = {"kind": "url", "data": {"url": "https://example.com/first"}}


def test_low_contrast_dark_and_light_are_refused_like_module_colours(gateway, alice):
    refused = create(gateway, alice, {"kind": "text", "data": {"text": "x"}, "style": {"dark": "#eeeeee"}})
    assert refused.status_code == 422, refused.text
    (error,) = refused.json()["errors"]
    assert error["field"] == "style.dark"
    assert "has a contrast of 1.2:1; scanners need at least 3:1" in error["message"], error


def test_every_styled_code_is_read_back_before_it_is_ready(gateway, alice):
    # A nearly transparent dark passes the contrast rule (what shows through is unknown) and cannot be read.
    faint = created(gateway, alice, {"kind": "text", "data": {"text": "faint"}, "style": {"dark": "#00000010"}})
    code = wait_until_rendered(gateway, alice, faint["id"])
    assert code["status"] == "failed", code
    assert "cannot be read back" in code["error"], code
    navy = created(gateway, alice, {"kind": "text", "data": {"text": "navy"}, "style": {"dark": "#1a237e"}})
    assert wait_until_rendered(gateway, alice, navy["id"])["status"] == "ready"


def test_after_patching_target_url_data_url_is_the_new_target(gateway, alice):
    code = created(gateway, alice, URL)
    new = "https://example.com/second"
    patched = gateway.patch(f"/v1/qrcodes/{code['id']}", json={"target_url": new}, headers=alice.headers)
    assert patched.status_code == 200, patched.text
    for shown in (patched.json(), gateway.get(f"/v1/qrcodes/{code['id']}", headers=alice.headers).json()):
        assert (shown["target_url"], shown["data"]["url"]) == (new, new), shown


def test_the_redirect_carries_nosniff(gateway, alice):
    code = created(gateway, alice, URL)
    for method in ("GET", "HEAD"):
        response = gateway.request(method, f"/r/{code['slug']}", follow_redirects=False)
        assert response.status_code == 302, response.text
        assert response.headers["x-content-type-options"] == "nosniff"


# --- friction: what the API answers to wrong input -----------------------------------------------------


def test_a_json_route_without_json_is_415_naming_the_type(gateway, alice):
    body = '{"kind": "text", "data": {"text": "x"}}'
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {**alice.headers, **({"Content-Type": content_type} if content_type else {})}
        response = gateway.post("/v1/qrcodes", content=body, headers=headers)
        assert response.status_code == 415, (content_type, response.text)
        error = response.json()
        assert error["code"] == "unsupported_media_type", error
        assert "Content-Type: application/json" in error["message"], error
        assert error["errors"][0]["field"] == "Content-Type", error
    code = created(gateway, alice, {"kind": "text", "data": {"text": "patch me"}})
    patched = gateway.patch(
        f"/v1/qrcodes/{code['id']}", content='{"title": "t"}', headers={**alice.headers, "Content-Type": "text/plain"}
    )
    assert patched.status_code == 415, patched.text
    # A stranger learns nothing about the body: authentication comes first.
    stranger = gateway.post("/v1/qrcodes", content=body, headers={"Content-Type": "text/plain"})
    assert stranger.status_code == 401, stranger.text
    # application/json with parameters is JSON.
    json_utf8 = {**alice.headers, "Content-Type": "application/json; charset=utf-8"}
    ok = gateway.post("/v1/qrcodes", content=body, headers=json_utf8)
    assert ok.status_code == 202, ok.text


def test_an_unknown_image_format_is_404(gateway, alice):
    code = created(gateway, alice, {"kind": "text", "data": {"text": "gif?"}})
    code = wait_until_rendered(gateway, alice, code["id"])
    response = gateway.get(f"/v1/qrcodes/{code['id']}/image.gif", headers=alice.headers)
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "not_found" and "png, svg, pdf, eps" in response.json()["message"]
    assert gateway.get(f"/v1/qrcodes/{code['id']}/image.png", headers=alice.headers).status_code == 200


def test_batches_are_listed_newest_first_in_cursor_pages_per_workspace(gateway, alice, bob):
    made = []
    for n in range(3):
        body = {"items": [{"kind": "text", "data": {"text": f"listed batch {n}"}}], "formats": ["png"]}
        response = gateway.post("/v1/batches", json=body, headers=alice.headers)
        assert response.status_code == 202, response.text
        made.append(response.json()["id"])
    first = gateway.get("/v1/batches?limit=2", headers=alice.headers)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [b["id"] for b in page["items"]] == made[::-1][:2]
    assert page["items"][0]["total"] == 1 and page["next_cursor"]
    seen = [b["id"] for b in page["items"]]
    while page["next_cursor"]:
        page = gateway.get(f"/v1/batches?limit=2&cursor={page['next_cursor']}", headers=alice.headers).json()
        seen += [b["id"] for b in page["items"]]
    assert seen[:3] == made[::-1] and len(seen) == len(set(seen))
    theirs = gateway.get("/v1/batches?limit=100", headers=bob.headers).json()["items"]
    assert not set(made) & {b["id"] for b in theirs}  # another workspace's batches are not listed
    bad = gateway.get("/v1/batches?cursor=garbage!", headers=alice.headers)
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"


def test_every_error_has_the_same_shape(gateway, alice):
    """code, message and an errors array, whoever answers: FastAPI's handlers, a middleware, the redirect."""
    text = {"kind": "text", "data": {"text": "shape"}}
    answers = {
        "401": gateway.get("/v1/qrcodes"),
        "413": gateway.post("/v1/qrcodes", content=b"x" * (2 * 1024 * 1024), headers=alice.headers),
        "422 query": gateway.get("/v1/qrcodes?limit=0", headers=alice.headers),
        "422 cursor": gateway.get("/v1/qrcodes?cursor=garbage!", headers=alice.headers),
        "404 redirect": gateway.get("/r/no-such-slug-here", headers={"Accept": "application/json"}),
    }
    key = {**alice.headers, "Idempotency-Key": f"shape-{uuid.uuid4()}"}
    assert gateway.post("/v1/qrcodes", json=text, headers=key).status_code == 202
    answers["idempotency"] = gateway.post("/v1/qrcodes", json={**text, "title": "other"}, headers=key)
    for what, response in answers.items():
        body = response.json()
        assert set(body) == {"code", "message", "errors"} and isinstance(body["errors"], list), (what, body)
    assert answers["422 query"].json()["code"] == answers["422 cursor"].json()["code"] == "validation_error"


def test_a_range_too_long_says_so_in_words(gateway, alice):
    code = created(gateway, alice, {"kind": "url", "data": {"url": "https://example.com/range"}})
    response = gateway.get(
        f"/v1/qrcodes/{code['id']}/analytics?from=2020-01-01&to=2021-01-01&interval=hour", headers=alice.headers
    )
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert "from from" not in message and "between `from` and `to` holds more than 2000 hours" in message, message
