"""The dashboard's cookie and its `next` rule (app/web/auth.py), without a server."""

from __future__ import annotations

import pytest
from starlette.responses import Response

from app.kit.settings import Settings
from app.web.auth import clear_session_cookie, safe_next, set_session_cookie


@pytest.mark.parametrize(
    ("public_base_url", "secure"), [("https://qr.example.com", True), ("http://127.0.0.1:8000", False)]
)
def test_the_cookie_is_httponly_lax_scoped_to_app_and_secure_over_https(tmp_path, public_base_url, secure):
    settings = Settings(data_dir=tmp_path, public_base_url=public_base_url, session_absolute_seconds=3600)
    response = Response()
    set_session_cookie(response, settings, "the-token")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("qrflow_session=the-token;")
    assert "HttpOnly" in cookie and "Path=/app" in cookie and "SameSite=lax" in cookie and "Max-Age=3600" in cookie
    assert ("Secure" in cookie) is secure
    cleared = Response()
    clear_session_cookie(cleared, settings)
    assert "Max-Age=0" in cleared.headers["set-cookie"] and "Path=/app" in cleared.headers["set-cookie"]


@pytest.mark.parametrize("target", ["/app", "/app/codes", "/app/codes?tag=a&kind=url", "/app/codes/1#top"])
def test_next_keeps_dashboard_paths(target):
    assert safe_next(target) == target


@pytest.mark.parametrize(
    "target",
    ["", "https://evil.example/app", "//evil.example/app", "///evil.example", "/\\evil.example", "\\\\evil",
     "/v1/qrcodes", "/application", "javascript:alert(1)", "/app/../v1", "/app/%2E%2E/v1", "/app/./x/../../v1",
     "/app/\r\nSet-Cookie:x=1", "app/codes", "http:/app"],
)
def test_next_leads_nowhere_else(target):
    assert safe_next(target) == "/app"
