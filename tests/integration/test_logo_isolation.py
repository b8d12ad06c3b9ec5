"""Issue #13, item 2: one SVG logo must not freeze the gateway, nor wedge a worker.

The gateway is a real `qrflow api` process; while the attack logos are uploaded to it, a poller asks it
for /healthz and for another workspace's redirect, and no answer may take a second.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import select

from app.identity.models import Workspace
from app.kit.redis_server import free_port
from app.qrcodes.logos import Logo, logo_key
from tests import logo_attacks
from tests.conftest import wait_until_rendered
from tests.integration.test_qrcodes_api import created

URL = {"kind": "url", "data": {"url": "https://example.com/campaign"}}
MAX_STALL = 1.0


@pytest.fixture
def api_process(backend, tmp_path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "QRFLOW_DATABASE_URL": backend.settings.database_url,
        "QRFLOW_REDIS_URL": backend.settings.redis_url,
        "QRFLOW_DATA_DIR": str(backend.settings.data_dir),
        "QRFLOW_API_PORT": str(port),
        "QRFLOW_LOG_FORMAT": "json",
    }
    log = (tmp_path / "api.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "api"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "api.log").read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@contextmanager
def poller(base: str, slug: str) -> Iterator[list[float]]:
    """Asks for /healthz and the redirect in turn until the block ends; yields the slowest answers."""
    stop = threading.Event()
    slowest: list[float] = []
    failures: list[str] = []

    def poll() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                for method, path, expected in (("GET", "/healthz", 200), ("HEAD", f"/r/{slug}", 302)):
                    started = time.monotonic()
                    try:
                        status = client.request(method, path).status_code
                    except httpx.TransportError as exc:
                        failures.append(f"{path}: {exc!r}")
                        continue
                    slowest.append(time.monotonic() - started)
                    if status != expected:
                        failures.append(f"{path}: {status}")
                time.sleep(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield slowest
    finally:
        stop.set()
        thread.join(60)
    assert not failures, failures[:5]


ATTACKS = {
    "a 4096×4096 embedded image drawn 60 times": (logo_attacks.embedded_image_used(), ["pixels of embedded images"]),
    "four nested levels of ten <use>": (logo_attacks.nested_uses(), ["elements once its <use>"]),
    "feTurbulence numOctaves=1000000": (logo_attacks.turbulence(1_000_000), ["numOctaves 1,000,000"]),
    "feTurbulence numOctaves=100": (logo_attacks.turbulence(100, "0.9"), ["numOctaves 100"]),
    # Caught by the drawing's limits; on a busy host the niced child may reach the wall clock's first.
    "a filter a transform makes costly": (logo_attacks.scaled_morphology(), ["of CPU time", "took longer than"]),
}


def test_costly_logos_are_422_naming_why_and_the_gateway_keeps_answering(gateway, alice, bob, api_process):
    redirect = created(gateway, bob, URL)
    with poller(api_process, redirect["slug"]) as answers, httpx.Client(base_url=api_process, timeout=120) as client:
        for name, (svg, why) in ATTACKS.items():
            response = client.post(
                "/v1/logos", content=svg, headers={**alice.headers, "Content-Type": "image/svg+xml"}
            )
            assert response.status_code == 422, (name, response.text)
            body = response.json()
            assert any(reason in body["message"] for reason in why), (name, body)
            assert body["errors"][0]["field"] == "body"
    assert len(answers) > 20, "the poller hardly ran"
    assert max(answers) < MAX_STALL, f"the gateway stalled {max(answers):.2f} s"


def test_a_logo_too_costly_to_draw_fails_its_code_with_the_reason_in_bounded_time(gateway, alice, backend):
    """A logo that reached storage without the upload check (stored before it existed): the worker's
    drawing has limits of its own."""
    from workers.runtime import runtime

    resources = runtime()
    with resources.sessions.begin() as session:
        workspace_id = session.scalar(select(Workspace.id).where(Workspace.name == alice.workspace))
        logo_id = uuid.uuid4()
        data = logo_attacks.scaled_morphology()
        resources.store.put(logo_key(workspace_id, logo_id, "image/svg+xml"), data)
        session.add(Logo(id=logo_id, workspace_id=workspace_id, media_type="image/svg+xml", width=100, height=100,
                         size_bytes=len(data), sha256="0" * 64))
    code = created(gateway, alice, {**URL, "style": {"logo": str(logo_id), "error": "H"}})
    code = wait_until_rendered(gateway, alice, code["id"], timeout=120)
    assert code["status"] == "failed"
    assert "CPU time" in code["error"] or "longer than" in code["error"], code["error"]
