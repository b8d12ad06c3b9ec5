"""The dashboard's static files (app/web/assets.py) and its front door, through the real gateway."""

from __future__ import annotations

import hashlib
import re

from app.web.assets import STATIC_DIR, StaticAssets


def test_the_front_door_leads_people_to_the_dashboard(gateway):
    response = gateway.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/app"


def test_static_files_have_hashed_names_and_are_cached_for_a_year(gateway):
    assets = StaticAssets()
    url = assets.url("vendor/htmx/htmx.min.js")
    source = (STATIC_DIR / "vendor/htmx/htmx.min.js").read_bytes()
    digest = re.search(r"htmx\.min\.([0-9a-f]{12})\.js$", url).group(1)
    assert hashlib.sha256(source).hexdigest().startswith(digest)

    response = gateway.get(url)
    assert response.status_code == 200 and response.content == source
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert gateway.get(assets.url("css/app.css")).headers["content-type"].startswith("text/css")


def test_only_the_hashed_names_of_known_files_are_served(gateway):
    assert gateway.get("/app/static/vendor/htmx/htmx.min.js").status_code == 404  # the unhashed name
    assert gateway.get("/app/static/vendor/htmx/htmx.min.000000000000.js").status_code == 404
    assert gateway.get("/app/static/../templates/base.html").status_code == 404
    assert gateway.get("/app/static/%2e%2e/templates/base.html").status_code == 404
