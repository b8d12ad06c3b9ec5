"""The dashboard in a real browser (Chromium) against real processes: sign in, make codes through the form
and read their images back, scan, roll up and see the numbers move, run a batch, edit a link, and the
guards: roles, workspaces, CSRF, escaping, sign-out. axe-core checks every page visited."""

from __future__ import annotations

import re
import time
import zipfile
from io import BytesIO
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from app.identity.models import Role, Scope
from tests.browser.conftest import Platform, run_axe, sign_in
from tests.decoding import decode_png

pytestmark = pytest.mark.e2e

WIFI = "WIFI:T:WPA;S:Cafe Guest;P:espresso42;;"
HOSTILE = ["<script>alert('title')</script>", '"><img src=x onerror=alert(1)>']


@pytest.fixture(scope="module")
def editor(browser, platform: Platform) -> Page:
    page = sign_in(browser, platform, platform.person("workspace-a", Role.EDITOR))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    yield page
    page.context.close()


def check_page(page: Page, screenshots, name: str) -> None:
    """Every page visited: no serious or critical axe violation, and a screenshot."""
    page.wait_for_load_state("networkidle")
    assert run_axe(page) == [], name
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def test_codes_of_several_kinds_made_through_the_form_scan_as_they_should(editor: Page, screenshots):
    check_page(editor, screenshots, "codes-empty")
    made = {}
    for kind, fields, expected in [
        ("text", {"Text": "Hello from the dashboard"}, "Hello from the dashboard"),
        ("wifi", {"Network name (SSID)": "Cafe Guest", "Password": "espresso42"}, WIFI),
        ("url", {"URL": "https://example.com/spring"}, None),  # dynamic: the short link
    ]:
        editor.goto(f"/app/codes/new?kind={kind}")
        for label, value in fields.items():
            editor.get_by_label(label).first.fill(value)
        editor.get_by_label("Title", exact=True).fill(f"A {kind} code")
        # The live preview: drawn by a worker, read back, shown with what a scanner reads.
        expect(editor.get_by_test_id("preview-image")).to_be_visible(timeout=30_000)
        decoded = editor.get_by_test_id("preview-decoded").first.inner_text()
        if expected:
            assert decoded == expected
        if kind == "url":
            check_page(editor, screenshots, "new-code")
        editor.get_by_role("button", name="Create code").click()
        editor.wait_for_url(re.compile(r"/app/codes/[0-9a-f-]{36}$"))
        image = editor.get_by_test_id("code-image")
        expect(image).to_be_visible(timeout=60_000)
        editor.wait_for_function("document.querySelector('[data-testid=code-image]').complete")
        image.evaluate("image => image.decode()")  # decoded, so the screenshot shows it whole
        content = editor.locator("pre.content").first.inner_text()
        assert decode_png(image.screenshot()) == [content]  # the image as shown, read like a phone would
        if expected:
            assert content == expected
        made[kind] = editor.url
    check_page(editor, screenshots, "code")
    editor.goto("/app/codes")
    for kind in made:
        expect(editor.get_by_role("link", name=f"A {kind} code")).to_be_visible()
    check_page(editor, screenshots, "codes")


def test_payload_too_long_shows_by_its_field_before_submit(editor: Page):
    editor.goto("/app/codes/new?kind=text")
    editor.get_by_label("Error correction").select_option("H")
    editor.get_by_label("Text").first.fill("x" * 1300)
    expect(editor.locator("#err-data")).to_contain_text("holds at most", timeout=15_000)
    editor.get_by_label("Text").first.fill("short again")
    expect(editor.locator("#err-data")).to_have_text("", timeout=15_000)


def _dynamic_code(platform: Platform, caller, target: str = "https://example.com/landing", **extra) -> dict:
    with platform.client() as client:
        body = {"kind": "url", "data": {"url": target}, **extra}
        response = client.post("/v1/qrcodes", json=body, headers=caller.headers)
        assert response.status_code == 202, response.text
        return response.json()


def _redirect_target(page: Page, short_url: str) -> str:
    """Follows a short link as the phone's browser would, but stops at the redirect (no internet here)."""
    response = page.request.get(short_url, max_redirects=0)
    assert response.status == 302, response.status
    return response.headers["location"]


def test_a_scan_rolled_up_moves_the_analytics_numbers(editor: Page, platform: Platform, screenshots):
    alice = platform.caller("workspace-a")
    operator = platform.caller("operators", Scope.OPERATOR)
    code = _dynamic_code(platform, alice, title="Scanned poster")
    editor.goto(f"/app/analytics/codes/{code['id']}?range=24h")
    expect(editor.get_by_test_id("total-scans")).to_have_text("0")

    assert _redirect_target(editor, code["short_url"]) == "https://example.com/landing"
    deadline = time.monotonic() + 60
    with platform.client() as client:
        while True:  # the scan is stored a moment after the redirect; each rollup folds what is stored
            rollup = client.post("/v1/analytics/rollup", headers=operator.headers)
            assert rollup.status_code == 202, rollup.text
            task = rollup.headers["location"]
            while client.get(task, headers=operator.headers).json()["state"] not in ("SUCCESS", "FAILURE"):
                time.sleep(0.1)
            editor.reload()
            if editor.get_by_test_id("total-scans").inner_text() == "1":
                break
            assert time.monotonic() < deadline, "the scan never showed on the analytics page"
            time.sleep(0.3)
    expect(editor.get_by_test_id("as-of")).to_be_visible()
    assert editor.locator("#series-chart canvas").count() == 1  # uPlot drew the series
    expect(editor.get_by_role("cell", name="mobile", exact=True)).to_be_visible()  # the device breakdown
    check_page(editor, screenshots, "analytics-code")
    editor.goto("/app/analytics?range=24h")
    expect(editor.get_by_role("link", name="Scanned poster")).to_be_visible()  # a top code
    check_page(editor, screenshots, "analytics")
    with editor.expect_download() as download:
        editor.get_by_role("link", name="Download the series (CSV)").click()
    assert download.value.path().read_text().startswith("ts,scans,unique,bots")


def test_a_new_target_is_where_the_short_link_leads(editor: Page, platform: Platform):
    code = _dynamic_code(platform, platform.caller("workspace-a"), title="Moving target")
    editor.goto(f"/app/codes/{code['id']}")
    editor.get_by_label("Target URL").fill("https://example.org/autumn")
    editor.get_by_role("button", name="Save").click()
    expect(editor.get_by_text("Saved.")).to_be_visible()
    assert _redirect_target(editor, code["short_url"]) == "https://example.org/autumn"


def test_a_csv_batch_runs_to_done_and_its_zip_downloads(editor: Page, platform: Platform, screenshots):
    csv = "kind,url,text,title,tags\r\n" + "".join(
        f"url,https://example.com/b{i},,Batch row {i},batch\r\n" if i % 2 else f"text,,row {i},Batch row {i},\r\n"
        for i in range(6)
    )
    editor.goto("/app/batches")
    check_page(editor, screenshots, "batches")
    editor.get_by_label("CSV file").set_input_files(
        files=[{"name": "codes.csv", "mimeType": "text/csv", "buffer": csv.encode()}]
    )
    editor.get_by_role("button", name="Create batch").click()
    editor.wait_for_url(re.compile(r"/app/batches/[0-9a-f-]{36}$"))
    expect(editor.get_by_test_id("batch-status")).to_have_text("done", timeout=90_000)
    assert editor.locator("#batch-bar").get_attribute("value") == "6"
    check_page(editor, screenshots, "batch")
    with editor.expect_download() as download:
        editor.get_by_test_id("batch-zip").click()
    names = zipfile.ZipFile(BytesIO(download.value.path().read_bytes())).namelist()
    assert "manifest.csv" in names and sum(name.endswith(".png") for name in names) == 6


def test_what_people_typed_shows_as_text(editor: Page, platform: Platform):
    alice = platform.caller("workspace-a")
    ids = []
    for hostile in HOSTILE:
        code = _dynamic_code(
            platform, alice, target="https://example.com/?q=" + quote(hostile), title=hostile, tags=[hostile]
        )
        ids.append(code["id"])
    editor.goto("/app/codes")
    for hostile in HOSTILE:
        expect(editor.get_by_role("link", name=hostile, exact=True).first).to_be_visible()
    for code_id, hostile in zip(ids, HOSTILE, strict=True):
        editor.goto(f"/app/codes/{code_id}")
        expect(editor.get_by_role("heading", name=hostile)).to_be_visible()
        expect(editor.locator(".tag", has_text=hostile)).to_be_visible()
        expect(editor.get_by_label("Title")).to_have_value(hostile)
    editor.goto("/app/analytics?range=24h")
    assert editor.dialogs == []  # type: ignore[attr-defined]
    assert editor.evaluate("document.querySelectorAll('img[src=x]').length") == 0


def test_a_viewer_sees_no_controls_and_is_refused(browser, platform: Platform, screenshots):
    code = _dynamic_code(platform, platform.caller("workspace-a"), title="Look, do not touch")
    viewer = sign_in(browser, platform, platform.person("workspace-a", Role.VIEWER))
    try:
        expect(viewer.get_by_role("link", name="New code")).to_have_count(0)
        viewer.goto(f"/app/codes/{code['id']}")
        expect(viewer.get_by_role("heading", name="Look, do not touch")).to_be_visible()
        expect(viewer.get_by_role("button", name="Save")).to_have_count(0)
        expect(viewer.get_by_role("button", name="Delete code")).to_have_count(0)
        token = viewer.locator("input[name=csrf_token]").first.get_attribute("value")
        for path, form in [
            (f"/app/codes/{code['id']}", {"title": "changed"}),
            (f"/app/codes/{code['id']}/delete", {}),
            ("/app/codes/new", {"kind": "text", "data.text": "x"}),
            ("/app/batches", {"body_text": '{"items": [{"kind": "text", "data": {"text": "x"}}]}'}),
        ]:
            response = viewer.request.post(path, form={"csrf_token": token, **form}, max_redirects=0)
            assert response.status == 403, (path, response.status)
        viewer.goto("/app/batches")
        expect(viewer.get_by_role("button", name="Create batch")).to_have_count(0)
    finally:
        viewer.context.close()


def test_another_workspace_s_code_page_is_not_found(browser, platform: Platform):
    code = _dynamic_code(platform, platform.caller("workspace-a"))
    stranger = sign_in(browser, platform, platform.person("workspace-b", Role.ADMIN))
    try:
        response = stranger.goto(f"/app/codes/{code['id']}")
        assert response.status == 404
        assert stranger.request.get(f"/app/codes/{code['id']}/image.png").status == 404
        assert stranger.request.get(f"/app/analytics/codes/{code['id']}").status == 404
    finally:
        stranger.context.close()


def test_a_cross_site_form_post_is_refused(browser, platform: Platform):
    page = sign_in(browser, platform, platform.person("workspace-a", Role.EDITOR))
    marker = "cross-site-attempt"
    try:
        # Signed in, same site, but without the form's token: refused.
        response = page.request.post("/app/codes/new", form={"kind": "text", "data.text": marker}, max_redirects=0)
        assert response.status == 403
        # A page of another origin posting a form to the dashboard, in the same browser (the person's cookies).
        attacker = page.context.new_page()
        attacker.set_content(
            f'<form method="post" action="{platform.url}/app/codes/new">'
            f'<input name="kind" value="text"><input name="data.text" value="{marker}">'
            f'<input name="title" value="{marker}"><button>go</button></form>'
        )
        with attacker.expect_navigation():
            attacker.click("button")
        assert attacker.title().startswith(("Not allowed", "Sign in")), attacker.title()
        attacker.close()
    finally:
        page.context.close()
    editor = sign_in(browser, platform, platform.person("workspace-a", Role.EDITOR))
    try:
        editor.goto(f"/app/codes?q={marker}")
        expect(editor.get_by_text("No codes match these filters")).to_be_visible()
    finally:
        editor.context.close()


def test_admin_pages_are_accessible_and_reachable_by_keyboard(browser, platform: Platform, screenshots):
    admin = sign_in(browser, platform, platform.person("workspace-a", Role.ADMIN))
    try:
        for path, name in [("/app/people", "people"), ("/app/api-keys", "api-keys")]:
            admin.goto(path)
            check_page(admin, screenshots, name)
        admin.goto("/app/codes")
        reached = set()
        for _ in range(40):
            admin.keyboard.press("Tab")
            reached.add(admin.evaluate("document.activeElement.getAttribute('href') || document.activeElement.id"))
        assert {"/app/codes/new", "/app/analytics", "/app/batches", "/app/people", "q"} <= reached, reached
    finally:
        admin.context.close()


def test_signing_out_sends_every_page_to_sign_in(browser, platform: Platform, screenshots):
    page = sign_in(browser, platform, platform.person("workspace-a", Role.EDITOR))
    try:
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/app/sign-in**")
        check_page(page, screenshots, "sign-in")
        for path in ["/app/codes", "/app/codes/new", "/app/analytics", "/app/batches", "/app/people"]:
            page.goto(path)
            assert "/app/sign-in" in page.url, path
    finally:
        page.context.close()
