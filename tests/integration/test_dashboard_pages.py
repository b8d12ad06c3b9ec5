"""The dashboard's pages through the real gateway (TestClient) on each backend: they call the services the
API calls, escape what people typed, and keep roles, workspaces and CSRF apart. The browser tests
(tests/browser/) drive the same pages in Chromium."""

from __future__ import annotations

import re
import time
import uuid
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.gateway.main import create_app
from app.identity.models import Role
from app.kit.db import create_sync_engine
from app.links.models import Link
from app.qrcodes import search
from tests.conftest import wait_until_rendered
from tests.integration.dashboard_helpers import PASSWORD, csrf_token, make_person

HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>']


@pytest.fixture(scope="module")
def signed_in(backend, worker):
    """A client per role of workspace-a, each signed in through the form."""
    clients = {}
    apps = []
    for role in (Role.EDITOR, Role.VIEWER):
        client = TestClient(create_app(backend.settings))
        client.__enter__()
        apps.append(client)
        email = make_person(backend.settings, "workspace-a", role)
        response = client.post("/app/sign-in", data={"email": email, "password": PASSWORD}, follow_redirects=False)
        assert response.status_code == 303
        clients[role] = client
    yield clients
    for client in apps:
        client.__exit__(None, None, None)


def _token(client: TestClient) -> str:
    return csrf_token(client.get("/app/codes").text)


def test_pages_show_what_people_typed_as_text(signed_in, gateway, alice):
    editor = signed_in[Role.EDITOR]
    made = []
    for i, hostile in enumerate(HOSTILE):
        body = {"kind": "url", "data": {"url": f"https://example.com/{i}?q={quote(hostile)}"}, "title": hostile,
                "tags": [hostile[:60]]}
        response = gateway.post("/v1/qrcodes", json=body, headers=alice.headers)
        assert response.status_code == 202, response.text
        made.append(response.json()["id"])
    wait_until_rendered(gateway, alice, made[-1])
    for url in ["/app/codes", f"/app/codes/{made[0]}", f"/app/codes/{made[1]}", "/app/codes?q=" + HOSTILE[1]]:
        page = editor.get(url)
        assert page.status_code == 200, url
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text or "&#34;&gt;&lt;img" in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


def test_the_search_filters_and_pages_of_the_codes_table(signed_in, gateway, alice):
    editor = signed_in[Role.EDITOR]
    marker = f"needle{time.monotonic_ns()}"
    ids = []
    for i in range(3):
        body = {"kind": "text", "data": {"text": f"{marker} {i}"}, "tags": [marker]}
        ids.append(gateway.post("/v1/qrcodes", json=body, headers=alice.headers).json()["id"])
    found = editor.get("/app/codes", params={"q": marker.upper()}).text
    assert all(i in found for i in ids)
    assert ids[0] not in editor.get("/app/codes", params={"q": marker, "kind": "url"}).text
    by_tag = editor.get("/app/codes", params={"tag": marker, "sort": "oldest"}).text
    assert by_tag.index(ids[0]) < by_tag.index(ids[2])
    assert editor.get("/app/codes", params={"cursor": "not-a-cursor"}).status_code == 422


def test_the_search_follows_what_codes_say_now_and_takes_its_words_literally(
    backend, signed_in, gateway, alice, monkeypatch
):
    """Searches of three characters or more go through the trigram index (migration 0013) when it finds few
    codes: it must follow edits and changed slugs (a batch's retry draws a new one), and a `%` or `_` typed
    must stay a character. With more candidates than FEW the same search walks the codes instead."""
    editor = signed_in[Role.EDITOR]
    marker = f"kestrel{time.monotonic_ns()}"
    body = {"kind": "url", "data": {"url": "https://example.com/k"}, "dynamic": True, "title": f"Big {marker} sign"}
    code = gateway.post("/v1/qrcodes", json=body, headers=alice.headers).json()

    def found(q: str) -> bool:
        return code["id"] in editor.get("/app/codes", params={"q": q}).text

    assert found(f"{marker} SIGN") and found(code["slug"][1:].upper())
    assert not found(f"{marker}%sign") and not found(f"{marker}_sign") and not found(f'"{marker}"')
    with monkeypatch.context() as walking:
        walking.setattr(search, "FEW", 0)
        assert found(f"{marker} SIGN") and not found(f"{marker}%sign")
    engine = create_sync_engine(backend.settings)
    with engine.begin() as connection:
        connection.execute(update(Link).where(Link.slug == code["slug"]).values(slug=marker.replace("kestrel", "wren")))
    engine.dispose()
    assert found(marker.replace("kestrel", "wren"))  # the content keeps the old short link: only the slug says this
    renamed = gateway.patch(f"/v1/qrcodes/{code['id']}", json={"title": f"Small {marker[::-1]}"}, headers=alice.headers)
    assert renamed.status_code == 200
    assert not found(marker) and found(marker[::-1])
    assert gateway.delete(f"/v1/qrcodes/{code['id']}", headers=alice.headers).status_code == 204
    assert not found(marker[::-1])


def test_create_preview_edit_and_delete_through_the_forms(signed_in, gateway, alice):
    editor = signed_in[Role.EDITOR]
    token = _token(editor)
    preview = editor.post(
        "/app/codes/preview", data={"kind": "text", "data.text": "hello there", "style.error": "M"},
        headers={"X-CSRF-Token": token},
    )
    assert preview.status_code == 200 and "hello there" in preview.text
    poll = re.search(r'hx-get="(/app/codes/preview/[^"]+)"', preview.text).group(1)
    deadline = time.monotonic() + 30
    while "Drawing" in (drawn := editor.get(poll).text):
        assert time.monotonic() < deadline, "the preview was never drawn"
        time.sleep(0.05)
    assert 'data-testid="preview-decoded">hello there<' in drawn

    too_long = editor.post(
        "/app/codes/preview", data={"kind": "text", "data.text": "x" * 8000, "style.error": "H"},
        headers={"X-CSRF-Token": token},
    )
    assert re.search(r'id="err-data"[^>]*>[^<]*holds at most 1273', too_long.text, re.IGNORECASE)

    created = editor.post(
        "/app/codes/new",
        data={"csrf_token": token, "kind": "url", "data.url": "https://example.com/a", "dynamic": "true",
              "style.error": "Q", "title": "Poster", "tags": "print, spring"},
        follow_redirects=False,
    )
    assert created.status_code == 303
    page = created.headers["location"]
    form_id = str(uuid.uuid4())
    twice = [
        editor.post("/app/codes/new", data={"csrf_token": token, "kind": "text", "data.text": "once",
                                            "form_id": form_id}, follow_redirects=False)
        for _ in range(2)
    ]
    assert [r.status_code for r in twice] == [303, 303]
    assert twice[0].headers["location"] == twice[1].headers["location"]  # a form sent twice makes one code
    code_id = page.rsplit("/", 1)[1]
    code = gateway.get(f"/v1/qrcodes/{code_id}", headers=alice.headers).json()
    assert code["title"] == "Poster" and code["tags"] == ["print", "spring"] and code["style"]["error"] == "Q"

    edited = editor.post(page, data={"csrf_token": token, "title": "Poster 2", "tags": "x",
                                     "target_url": "https://example.org/b", "max_scans": "5"}, follow_redirects=False)
    assert edited.status_code == 303
    code = gateway.get(f"/v1/qrcodes/{code_id}", headers=alice.headers).json()
    assert code["target_url"] == "https://example.org/b" and code["max_scans"] == 5 and code["title"] == "Poster 2"

    refused = editor.post(page, data={"csrf_token": token, "target_url": "javascript:alert(1)"})
    assert refused.status_code == 422 and "target_url" in refused.text

    assert editor.post(f"{page}/delete", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert gateway.get(f"/v1/qrcodes/{code_id}", headers=alice.headers).status_code == 404


def test_a_form_without_its_token_is_refused(signed_in):
    editor = signed_in[Role.EDITOR]
    response = editor.post("/app/codes/new", data={"kind": "text", "data.text": "x"})
    assert response.status_code == 403


def test_a_viewer_sees_no_controls_and_cannot_post(signed_in, gateway, alice):
    viewer = signed_in[Role.VIEWER]
    body = {"kind": "text", "data": {"text": "v"}}
    code_id = gateway.post("/v1/qrcodes", json=body, headers=alice.headers).json()["id"]
    page = viewer.get(f"/app/codes/{code_id}").text
    assert "/delete" not in page and 'action="/app/codes/' + code_id + '"' not in page
    assert "/app/codes/new" not in viewer.get("/app/codes").text
    token = _token(viewer)
    assert viewer.get("/app/codes/new").status_code == 403
    assert viewer.post(f"/app/codes/{code_id}/delete", data={"csrf_token": token}).status_code == 403
    create = {"csrf_token": token, "kind": "text", "data.text": "x"}
    assert viewer.post("/app/codes/new", data=create).status_code == 403


def test_another_workspace_s_code_is_not_found(signed_in, gateway, bob):
    body = {"kind": "text", "data": {"text": "b"}}
    code_id = gateway.post("/v1/qrcodes", json=body, headers=bob.headers).json()["id"]
    editor = signed_in[Role.EDITOR]
    assert editor.get(f"/app/codes/{code_id}").status_code == 404
    assert editor.get(f"/app/codes/{code_id}/image.png").status_code == 404
    assert editor.post(f"/app/codes/{code_id}/delete", data={"csrf_token": _token(editor)}).status_code == 404


def test_signed_out_pages_lead_to_sign_in(backend, worker):
    with TestClient(create_app(backend.settings)) as anonymous:
        for url in ["/app/codes", "/app/codes/new", "/app/analytics", "/app/batches"]:
            response = anonymous.get(url, follow_redirects=False)
            assert response.status_code == 303 and response.headers["location"].startswith("/app/sign-in")


def test_analytics_pages_and_their_csv(signed_in, gateway, alice):
    viewer = signed_in[Role.VIEWER]
    body = {"kind": "url", "data": {"url": "https://example.com/stats"}}
    code_id = gateway.post("/v1/qrcodes", json=body, headers=alice.headers).json()["id"]
    custom = "?range=custom&from=2026-01-01&to=2026-02-01&interval=day"
    for query in ["", "?range=24h", "?range=12m&tz=Europe/Paris", custom]:
        for base in ["/app/analytics", f"/app/analytics/codes/{code_id}"]:
            page = viewer.get(base + query)
            assert page.status_code == 200, (base, query, page.text[-500:])
            assert 'id="series-data"' in page.text
            csv_link = re.search(r'href="([^"]+analytics\.csv[^"]*)"', page.text).group(1).replace("&amp;", "&")
            assert viewer.get(csv_link).text.startswith("ts,scans,unique,bots")
    csv = viewer.get("/app/analytics.csv?range=7d")
    assert csv.status_code == 200 and csv.text.startswith("ts,scans,unique,bots")
    assert viewer.get(f"/app/analytics/codes/{code_id}/scans.csv").status_code == 200
    assert viewer.get("/app/analytics?tz=Not/AZone").status_code == 422


def test_a_batch_with_bad_rows_creates_nothing_until_asked(signed_in, gateway, alice):
    editor = signed_in[Role.EDITOR]
    token = _token(editor)
    csv = "kind,url,text,title\r\nurl,https://example.com/1,,<b>one</b>\r\nurl,not a url,,two\r\ntext,,hello,three\r\n"
    refused = editor.post(
        "/app/batches", data={"csrf_token": token, "formats": "png"},
        files={"csv_file": ("codes.csv", csv.encode(), "text/csv")},
    )
    assert refused.status_code == 422 and 'data-testid="batch-errors"' in refused.text
    assert re.search(r"<td>3</td><td>url</td>", refused.text)
    retried = editor.post(
        "/app/batches",
        data={"csrf_token": token, "source": "csv", "formats": "png", "partial": "true", "body_text": csv},
        follow_redirects=False,
    )
    assert retried.status_code == 303
    page = retried.headers["location"]
    deadline = time.monotonic() + 60
    while 'data-testid="batch-status">done' not in (progress := editor.get(page + "/progress").text):
        assert time.monotonic() < deadline, progress
        time.sleep(0.1)
    archive = editor.get(page + "/archive.zip")
    assert archive.status_code == 200 and archive.content[:2] == b"PK"
