"""People in a real browser: an admin adds someone, whose one-time password (shown once) signs them in to
the page where they choose their own, and then to their codes; the throttle's message after failed tries."""

from __future__ import annotations

import uuid

import pytest

from app.identity.models import Role
from tests.browser.conftest import PHONE_USER_AGENT, Platform, run_axe, sign_in

pytestmark = pytest.mark.e2e


def test_a_person_added_by_an_admin_chooses_their_own_password_at_first_sign_in(browser, platform: Platform,
                                                                                 screenshots):
    admin = sign_in(browser, platform, platform.person("workspace-a", Role.ADMIN))
    newcomer = browser.new_context(base_url=platform.url, user_agent=PHONE_USER_AGENT).new_page()
    try:
        email = f"new-{uuid.uuid4().hex[:8]}@example.com"
        admin.goto("/app/people")
        admin.get_by_label("Email", exact=True).fill(email)
        admin.get_by_label("Role", exact=True).select_option("editor")
        admin.get_by_role("button", name="Add", exact=True).click()
        admin.wait_for_load_state()
        password = admin.get_by_label("Password").input_value()
        assert len(password) >= 16
        assert run_axe(admin) == []

        newcomer.goto("/app/codes")
        newcomer.get_by_label("Email").fill(email)
        newcomer.get_by_label("Password").fill(password)
        newcomer.get_by_role("button", name="Sign in").click()
        newcomer.wait_for_url("**/app/account/password")
        assert run_axe(newcomer) == []
        newcomer.screenshot(path=str(screenshots / "password.png"), full_page=True)
        newcomer.goto("/app/codes")  # every page leads here until they have
        assert newcomer.url.endswith("/app/account/password")
        newcomer.get_by_label("Current password").fill(password)
        newcomer.get_by_label("New password", exact=True).fill("my own password")
        newcomer.get_by_label("New password again").fill("my own password")
        newcomer.get_by_role("button", name="Change password").click()
        newcomer.wait_for_url("**/app/codes")
        assert newcomer.get_by_role("navigation", name="Main").get_by_role("link", name="New code").count() == 1
    finally:
        admin.context.close()
        newcomer.context.close()


def test_failed_sign_ins_end_in_a_clear_message(browser, platform: Platform):
    email = platform.person("workspace-a", Role.VIEWER)
    page = browser.new_context(base_url=platform.url).new_page()
    try:
        page.goto("/app/sign-in")
        for _ in range(5):
            page.get_by_label("Email").fill(email)
            page.get_by_label("Password").fill("not the password")
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_load_state()
            assert "Wrong email or password" in page.get_by_role("alert").inner_text()
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
        assert "Too many failed sign-ins: try again in 15 minutes." in page.get_by_role("alert").inner_text()
        assert run_axe(page) == []
    finally:
        page.context.close()
