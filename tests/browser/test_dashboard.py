"""The dashboard in a real browser (Chromium) against real processes: sign in, make codes through the form
and read their images back, scan, roll up and see the numbers move, run a batch, edit a link, and the
guards: roles, workspaces, CSRF, escaping, sign-out. axe-core checks every page visited."""

from __future__ import annotations

import re
import time
import zipfile
from io import BytesIO

import pytest
from playwright.sync_api import Page, expect

from app.identity.models import Role, Scope
from tests.browser.conftest import Platform, run_axe, sign_in
from tests.decoding import decode_png

pytestmark = pytest.mark.e2e

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
        ("wifi", {"Network name (SSID)": "Cafe Guest", "Password": "espresso42"}, "WIFI:T:WPA;S:Cafe Guest;P:espresso42;;"),
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
