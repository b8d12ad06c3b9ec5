"""Signing in to the dashboard, its sessions, roles, CSRF tokens and workspaces, through a real `qrflow api`
process with httpx, on each backend: what a browser would send, cookie and form fields included."""

from __future__ import annotations

import re
import uuid
from urllib.parse import unquote

import httpx
import pytest

from app.identity.models import Role, Scope
from app.identity.passwords import hash_password
from app.identity.people import add_person
from app.identity.service import get_or_create_workspace, issue_api_key
from app.kit.db import create_sync_engine, sync_sessionmaker
from tests.integration.gateway_process import GatewayProcess

PASSWORD = "a long enough password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def api(backend, tmp_path_factory):
    gateway = GatewayProcess(backend, tmp_path_factory.mktemp(f"sign-in-{backend.name}"))
    yield gateway
    gateway.stop()


def _person(backend, workspace: str, role: Role) -> str:
    email = f"{role.value}-{uuid.uuid4().hex[:8]}@example.com"
    engine = create_sync_engine(backend.settings)
    try:
        with sync_sessionmaker(engine).begin() as session:
            add_person(session, get_or_create_workspace(session, workspace).id, email, role, hash_password(PASSWORD))
    finally:
        engine.dispose()
    return email


def _sign_in(api: GatewayProcess, email: str, next_path: str = "") -> tuple[httpx.Client, httpx.Response]:
    client = httpx.Client(base_url=api.url, timeout=60)
    response = client.post("/app/sign-in", data={"email": email, "password": PASSWORD, "next": next_path})
    return client, response


def _signed_in(api, email: str) -> httpx.Client:
    client, response = _sign_in(api, email)
    assert response.status_code == 303, response.text
    return client


def _csrf(client: httpx.Client, page: str = "/app/people") -> str:
    response = client.get(page)
    assert response.status_code == 200, response.text
    return CSRF.search(response.text).group(1)


def test_signing_in_sets_a_guarded_cookie_and_signing_out_ends_the_session(api, backend):
    workspace = f"ws-{uuid.uuid4().hex[:8]}"
    email = _person(backend, workspace, Role.ADMIN)
    client, response = _sign_in(api, email.upper(), "/app/people?sort=email")
    assert response.status_code == 303 and response.headers["location"] == "/app/people?sort=email"
    cookie = response.headers["set-cookie"]
    assert "qrflow_session=" in cookie and "HttpOnly" in cookie and "Path=/app" in cookie
    assert "samesite=lax" in cookie.lower() and "secure" not in cookie.lower()  # public_base_url is http
    page = client.get("/app/people")
    assert page.status_code == 200 and email in page.text
    token = _csrf(client)

    refused = client.post("/app/sign-out", data={"csrf_token": "not-the-token"})
    assert refused.status_code == 403
    signed_out = client.post("/app/sign-out", data={"csrf_token": token})
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/app/sign-in"
    # The old cookie, sent again as a copied cookie would be: the session is gone.
    stale = httpx.get(f"{api.url}/app/people", cookies={"qrflow_session": cookie.split(";")[0].split("=", 1)[1]})
    assert stale.status_code == 303 and stale.headers["location"] == "/app/sign-in?next=%2Fapp%2Fpeople"


def test_a_page_without_a_session_sends_you_to_sign_in_and_back(api, backend):
    email = _person(backend, f"ws-{uuid.uuid4().hex[:8]}", Role.ADMIN)
    response = httpx.get(f"{api.url}/app/api-keys", follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/app/sign-in?next=")
    form = httpx.get(f"{api.url}{location}")
    assert form.status_code == 200 and 'name="next" value="/app/api-keys"' in form.text
    assert re.search(r'<label for="email">', form.text) and re.search(r'<label for="password">', form.text)
    _, signed_in = _sign_in(api, email, unquote(location.split("next=", 1)[1]))
    assert signed_in.headers["location"] == "/app/api-keys"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/app", "/\\evil.example", "/v1/qrcodes",
                                    "javascript:alert(1)", "/app/../v1", "/app/%2e%2e/v1"])
def test_next_never_leads_off_the_dashboard(api, backend, target):
    email = _person(backend, f"ws-{uuid.uuid4().hex[:8]}", Role.VIEWER)
    _, response = _sign_in(api, email, target)
    assert response.status_code == 303 and response.headers["location"] == "/app"


def test_state_changes_need_the_sessions_csrf_token_and_a_same_site_request(api, backend):
    admin = _signed_in(api, _person(backend, f"ws-{uuid.uuid4().hex[:8]}", Role.ADMIN))
    token = _csrf(admin, "/app/api-keys")
    for refused in (
        admin.post("/app/api-keys", data={"scope": "read", "name": "no token"}),
        admin.post("/app/api-keys", data={"scope": "read", "name": "wrong", "csrf_token": token[:-1] + "x"}),
        admin.post("/app/api-keys", data={"scope": "read", "csrf_token": token},
                   headers={"Origin": "https://evil.example"}),
        admin.post("/app/api-keys", data={"scope": "read", "csrf_token": token},
                   headers={"Sec-Fetch-Site": "cross-site"}),
    ):
        assert refused.status_code == 403, refused.text
    assert "qrf_" not in admin.get("/app/api-keys").text  # nothing was created

    created = admin.post("/app/api-keys", data={"scope": "read", "name": "<b>poster</b>", "csrf_token": token},
                         headers={"Origin": api.url, "Sec-Fetch-Site": "same-origin"})
    assert created.status_code == 200
    assert "&lt;b&gt;poster&lt;/b&gt;" in created.text and "<b>poster</b>" not in created.text
    key = re.search(r'id="created-key" type="text" readonly value="(qrf_[^"]+)"', created.text).group(1)
    assert httpx.get(f"{api.url}/v1/qrcodes", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert key not in admin.get("/app/api-keys").text  # shown once
    by_header = admin.post("/app/api-keys", data={"scope": "write"}, headers={"X-CSRF-Token": token})
    assert by_header.status_code == 200


def test_a_viewer_reads_but_every_admin_post_is_refused(api, backend):
    workspace = f"ws-{uuid.uuid4().hex[:8]}"
    viewer = _signed_in(api, _person(backend, workspace, Role.VIEWER))
    assert viewer.get("/app/people").status_code == 403
    # The viewer's own valid token: the role refuses it.
    token = CSRF.search(viewer.get("/app/people").text).group(1)  # the layout's sign-out form carries it
    for path, data in (("/app/people", {"email": "x@example.com", "role": "admin"}),
                       ("/app/api-keys", {"scope": "read"})):
        assert viewer.post(path, data={**data, "csrf_token": token}).status_code == 403


def test_another_workspaces_people_and_keys_are_not_found(api, backend):
    workspace_a, workspace_b = f"ws-{uuid.uuid4().hex[:8]}", f"ws-{uuid.uuid4().hex[:8]}"
    viewer_a = _person(backend, workspace_a, Role.VIEWER)
    _person(backend, workspace_a, Role.ADMIN)
    engine = create_sync_engine(backend.settings)
    with sync_sessionmaker(engine).begin() as session:
        key_a = issue_api_key(session, workspace_a, Scope.READ, name="A's")
    engine.dispose()
    admin_a = _signed_in(api, _person(backend, workspace_a, Role.ADMIN))
    page_a = admin_a.get("/app/api-keys").text
    prefix = key_a.split("_")[1]
    key_id = re.search(rf'action="/app/api-keys/([0-9a-f-]+)/revoke"[^>]*>\s*<input[^>]+>\s*<button[^>]*qrf_{prefix}',
                       page_a).group(1)
    person_id = re.search(r'action="/app/people/([0-9a-f-]+)/role"', admin_a.get("/app/people").text).group(1)

    admin_b = _signed_in(api, _person(backend, workspace_b, Role.ADMIN))
    token_b = _csrf(admin_b)
    assert prefix not in admin_b.get("/app/api-keys").text and viewer_a not in admin_b.get("/app/people").text
    assert admin_b.post(f"/app/api-keys/{key_id}/revoke", data={"csrf_token": token_b}).status_code == 404
    assert admin_b.post(f"/app/people/{person_id}/disable", data={"csrf_token": token_b}).status_code == 404
    assert admin_b.post(f"/app/people/{person_id}/role",
                        data={"csrf_token": token_b, "role": "admin"}).status_code == 404
    assert httpx.get(f"{api.url}/v1/qrcodes", headers={"Authorization": f"Bearer {key_a}"}).status_code == 200


def test_an_admin_adds_people_changes_roles_and_disabling_ends_their_sessions(api, backend):
    workspace = f"ws-{uuid.uuid4().hex[:8]}"
    admin = _signed_in(api, _person(backend, workspace, Role.ADMIN))
    token = _csrf(admin)
    new_email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    added = admin.post("/app/people", data={"email": new_email, "role": "viewer", "csrf_token": token})
    assert added.status_code == 200
    password = re.search(r'id="created-password" type="text" readonly value="([^"]+)"', added.text).group(1)
    assert password not in admin.get("/app/people").text  # shown once
    again = admin.post("/app/people", data={"email": new_email.upper(), "role": "viewer", "csrf_token": token})
    assert again.status_code == 409 and "exists already" in again.text

    newcomer = httpx.Client(base_url=api.url, timeout=60)
    assert newcomer.post("/app/sign-in", data={"email": new_email, "password": password}).status_code == 303
    # Someone else chose that password: they choose their own before anything else.
    first = newcomer.get("/app/people")
    assert first.status_code == 303 and first.headers["location"] == "/app/account/password"
    form = newcomer.get("/app/account/password")
    assert form.status_code == 200 and '<label for="new_password">' in form.text
    own_token = CSRF.search(form.text).group(1)
    mismatch = newcomer.post("/app/account/password", data={
        "csrf_token": own_token, "current_password": password, "new_password": PASSWORD,
        "repeated_password": PASSWORD + "?"})
    assert mismatch.status_code == 422 and "differ" in mismatch.text
    chosen = newcomer.post("/app/account/password", data={
        "csrf_token": own_token, "current_password": password, "new_password": PASSWORD,
        "repeated_password": PASSWORD})
    assert chosen.status_code == 303 and chosen.headers["location"] == "/app"
    assert newcomer.get("/app/people").status_code == 403  # a viewer, with a new session
    person_id = re.search(rf'action="/app/people/([0-9a-f-]+)/role"[^>]*>\s*<input[^>]+>\s*<label[^>]*>Role of '
                          rf'{re.escape(new_email)}', admin.get("/app/people").text).group(1)
    assert admin.post(f"/app/people/{person_id}/role", data={"role": "admin", "csrf_token": token}).status_code == 303
    assert newcomer.get("/app/people").status_code == 200  # the new role at once, same session

    assert admin.post(f"/app/people/{person_id}/disable", data={"csrf_token": token}).status_code == 303
    gone = newcomer.get("/app/people")
    assert gone.status_code == 303 and gone.headers["location"].startswith("/app/sign-in")
    refused = newcomer.post("/app/sign-in", data={"email": new_email, "password": PASSWORD})
    assert refused.status_code == 401


def test_repeated_failed_sign_ins_for_one_email_are_throttled(api, backend):
    email = _person(backend, f"ws-{uuid.uuid4().hex[:8]}", Role.VIEWER)
    for _ in range(5):  # QRFLOW_SIGN_IN_FAILURES_PER_EMAIL's default
        wrong = httpx.post(f"{api.url}/app/sign-in", data={"email": email, "password": "not the password"})
        assert wrong.status_code == 401 and "Wrong email or password" in wrong.text
    throttled = httpx.post(f"{api.url}/app/sign-in", data={"email": email, "password": PASSWORD})
    assert throttled.status_code == 429 and "Too many failed sign-ins" in throttled.text
    assert 0 < int(throttled.headers["retry-after"]) <= 900


def test_the_gateways_log_carries_no_password_session_or_csrf_token(api, backend):
    email = _person(backend, f"ws-{uuid.uuid4().hex[:8]}", Role.ADMIN)
    client, response = _sign_in(api, email)
    session_token = response.cookies["qrflow_session"]
    token = _csrf(client)
    client.post("/app/people", data={"email": "bad@", "role": "viewer", "csrf_token": token})
    client.post("/app/sign-out", data={"csrf_token": token})
    log = api.log_path.read_text()
    assert PASSWORD not in log and session_token not in log and token not in log
