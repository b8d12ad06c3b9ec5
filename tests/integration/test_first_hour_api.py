"""What a new self-hoster tripped on in the API (issue #14), through the real gateway and a real worker on
each database."""

from __future__ import annotations

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
