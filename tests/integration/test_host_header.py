"""No answer is built from the client's Host header (issue #13, item 11)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("path", ["/v1/qrcodes/", "/docs/", "/healthz/", "/v1/analytics/"])
def test_a_trailing_slash_is_not_redirected_to_the_host_the_client_names(gateway, alice, path):
    response = gateway.get(path, headers={**alice.headers, "Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "evil.example" not in response.text
    assert response.json()["code"] == "not_found"
