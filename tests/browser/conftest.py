"""One real platform and one real browser for the browser tests: a `qrflow api` gateway and a `qrflow worker`
on every queue (subprocesses, as `qrflow up` runs them) on a SQLite database and a Redis database of their own,
driven by Debian's Chromium through Playwright (executable_path: no browser download)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from app.identity.models import Role, Scope
from app.kit.migrate import upgrade
from app.kit.redis_server import free_port
from app.kit.settings import Settings
from tests.conftest import Caller, _issue
from tests.integration.dashboard_helpers import PASSWORD, make_person

CHROMIUM = Path("/usr/bin/chromium")
# The platform's own Redis database: the in-process test worker of the integration tests reads db 0.
BROWSER_REDIS_DB = 11
AXE = Path(__file__).parent / "vendor" / "axe.min.js"


@dataclass
class Platform:
    url: str
    settings: Settings
    tmp: Path

    def caller(self, workspace: str, scope: Scope = Scope.WRITE) -> Caller:
        return _issue(self.settings, workspace, scope)

    def person(self, workspace: str, role: Role) -> str:
        return make_person(self.settings, workspace, role)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "app.cli", *args], env=env, stdout=out, stderr=out)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("browser-platform")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    broker = redis_url.rsplit("/", 1)[0] + f"/{BROWSER_REDIS_DB}"
    with redis.Redis.from_url(broker) as r:
        r.flushdb()
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'qrflow.db'}", data_dir=tmp / "data", redis_url=broker, public_base_url=url,
        api_key_cache_seconds=0,
    )
    upgrade(settings)
    env = {
        **os.environ,
        "QRFLOW_DATABASE_URL": settings.database_url,
        "QRFLOW_REDIS_URL": broker,
        "QRFLOW_DATA_DIR": str(settings.data_dir),
        "QRFLOW_API_PORT": str(port),
        "QRFLOW_PUBLIC_BASE_URL": url,
        "QRFLOW_LOG_FORMAT": "json",
    }
    processes = [
        _start(["api"], env, tmp / "api.log"),
        _start(["worker", "-c", "2"], env, tmp / "worker.log"),
    ]
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            for process in processes:
                assert process.poll() is None, (tmp / "api.log").read_text() + (tmp / "worker.log").read_text()
            assert time.monotonic() < deadline, "the gateway did not become ready"
            time.sleep(0.2)
        yield Platform(url, settings, tmp)
    finally:
        for process in processes:
            _stop(process)


# Per module: Playwright's sync API keeps an event loop running in this thread while it is started, and
# the other test files this process runs next (pytest-xdist) may call asyncio.run.
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium (dev.py test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root (CI containers), where Chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests save a screenshot of each page (QRFLOW_SCREENSHOTS_DIR to keep them)."""
    kept = os.environ.get("QRFLOW_SCREENSHOTS_DIR")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        return Path(kept)
    return tmp_path_factory.mktemp("screenshots")


# A phone's browser: scans by it count as a person's (a headless browser's user agent is a bot's).
PHONE_USER_AGENT = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)


def sign_in(browser, platform: Platform, email: str):
    """A new browser context (its own cookies) signed in as `email` through the sign-in form; its page."""
    context = browser.new_context(base_url=platform.url, user_agent=PHONE_USER_AGENT, accept_downloads=True)
    page = context.new_page()
    page.goto("/app/codes")
    assert "/app/sign-in" in page.url
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert page.url.endswith("/app/codes"), page.content()[:3000]
    return page


def run_axe(page) -> list[dict]:
    """axe-core's serious and critical violations on the page. Evaluated through the DevTools protocol, which
    the page's CSP does not govern (the app never serves axe)."""
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
