"""The scan flow through the real gateway, a real worker, Redis and each database: GET /r/{slug} answers
from the link cache, spools the scan, and the scans worker stores it, enriched, exactly once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from fastapi.testclient import TestClient

from app.gateway.main import create_app
from app.kit.db import utcnow
from tests.integration.test_qrcodes_api import created

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
SLACKBOT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"


def dynamic_code(gateway, caller, target="https://example.com/landing", **fields) -> dict:
    return created(gateway, caller, {"kind": "url", "data": {"url": target}, **fields})


def scan(gateway, slug: str, **headers: str):
    return gateway.get(f"/r/{slug}", headers={"user-agent": IPHONE, **headers}, follow_redirects=False)


def wait_for_scans(gateway, caller, code_id: str, expected: int, timeout: float = 30) -> dict:
    """The code once scans_total reached `expected`, then a moment more to show it goes no further."""
    deadline = time.monotonic() + timeout
    while (code := gateway.get(f"/v1/qrcodes/{code_id}", headers=caller.headers).json())["scans_total"] < expected:
        assert time.monotonic() < deadline, f"{code['scans_total']} of {expected} scans stored after {timeout}s"
        time.sleep(0.1)
    time.sleep(0.5)
    return gateway.get(f"/v1/qrcodes/{code_id}", headers=caller.headers).json()


def test_a_scan_is_redirected_at_once_and_stored_enriched(gateway, alice):
    code = dynamic_code(gateway, alice, "https://example.com/menu")
    response = scan(gateway, code["slug"], referer="https://www.instagram.com/p/xyz")
    assert response.status_code == 302
    assert response.headers["location"] == "https://example.com/menu"
    assert response.headers["cache-control"] == "no-store"

    assert wait_for_scans(gateway, alice, code["id"], 1)["scans_total"] == 1
    page = gateway.get(f"/v1/qrcodes/{code['id']}/scans", headers=alice.headers).json()
    [stored] = page["items"]
    assert stored["device"] == "mobile"
    assert stored["os"] == "iOS"
    assert stored["browser"] == "Mobile Safari"
    assert stored["is_bot"] is False
    assert stored["referrer_host"] == "www.instagram.com"
    assert len(stored["visitor"]) == 32
    assert "ip" not in stored and "testclient" not in str(stored)


def test_bots_are_stored_but_not_counted_and_head_records_nothing(gateway, alice):
    code = dynamic_code(gateway, alice)
    assert gateway.head(f"/r/{code['slug']}", follow_redirects=False).status_code == 302
    assert scan(gateway, code["slug"], **{"user-agent": SLACKBOT}).status_code == 302
    assert scan(gateway, code["slug"]).status_code == 302
    assert wait_for_scans(gateway, alice, code["id"], 1)["scans_total"] == 1
    items = gateway.get(f"/v1/qrcodes/{code['id']}/scans", headers=alice.headers).json()["items"]
    assert sorted(item["is_bot"] for item in items) == [False, True]  # the HEAD left no scan


def test_unknown_and_gone_links_answer_for_people_and_for_programs(gateway, alice):
    unknown = scan(gateway, "no-such-slug")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("text/html")
    assert "content-security-policy" in unknown.headers
    assert scan(gateway, "no-such-slug", accept="application/json").json()["code"] == "not_found"
    assert scan(gateway, "bad%00slug", accept="application/json").status_code == 404

    deleted = dynamic_code(gateway, alice)
    assert gateway.delete(f"/v1/qrcodes/{deleted['id']}", headers=alice.headers).status_code == 204
    disabled = dynamic_code(gateway, alice, disabled=True)
    expiring = dynamic_code(gateway, alice, expires_at=(utcnow() + timedelta(seconds=1)).isoformat())
    assert scan(gateway, expiring["slug"]).status_code == 302
    time.sleep(1.1)
    for code in (deleted, disabled, expiring):
        page = scan(gateway, code["slug"])
        assert page.status_code == 410, code
        assert page.headers["content-type"].startswith("text/html")
        as_json = scan(gateway, code["slug"], accept="application/json")
        assert as_json.json()["code"] == "gone"
    assert gateway.post(f"/r/{deleted['slug']}").status_code == 405


def test_max_scans_is_exact_under_concurrency(gateway, alice):
    code = dynamic_code(gateway, alice, max_scans=10)
    statuses: list[int] = []

    def scanner() -> None:
        for _ in range(5):
            statuses.append(scan(gateway, code["slug"]).status_code)

    threads = [threading.Thread(target=scanner) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [302] * 10 + [410] * 30
    assert wait_for_scans(gateway, alice, code["id"], 10)["scans_total"] == 10


def test_forward_query_appends_the_scans_utm_parameters(gateway, alice):
    forwarding = dynamic_code(gateway, alice, "https://example.com/a?ref=qr#top", forward_query=True)
    plain = dynamic_code(gateway, alice, "https://example.com/b")
    query = "?utm_source=poster&utm_medium=print"
    assert scan(gateway, forwarding["slug"] + query).headers["location"] == (
        "https://example.com/a?ref=qr&utm_source=poster&utm_medium=print#top"
    )
    assert scan(gateway, plain["slug"] + query).headers["location"] == "https://example.com/b"


def test_a_patched_target_is_served_by_every_gateway_process_within_a_second(gateway, alice, backend):
    code = dynamic_code(gateway, alice, "https://example.com/before")
    with TestClient(create_app(backend.settings)) as other_process:
        assert scan(other_process, code["slug"]).headers["location"] == "https://example.com/before"
        patched = gateway.patch(
            f"/v1/qrcodes/{code['id']}", json={"target_url": "https://example.com/after"}, headers=alice.headers
        )
        assert patched.status_code == 200
        assert scan(gateway, code["slug"]).headers["location"] == "https://example.com/after"
        deadline = time.monotonic() + 1.0
        while scan(other_process, code["slug"]).headers["location"] != "https://example.com/after":
            assert time.monotonic() < deadline, "the other gateway still serves the old target"
            time.sleep(0.02)


def test_x_forwarded_for_is_believed_only_from_trusted_proxies(backend, alice, tmp_path):
    spooled = []
    for trusted in ("", "*"):
        settings = backend.settings.model_copy(
            update={
                "trusted_proxies": trusted,
                "data_dir": tmp_path / (trusted or "none"),
                "scan_flush_interval_ms": 10_000,
            }
        )
        with TestClient(create_app(settings)) as client:
            code = dynamic_code(client, alice)
            assert scan(client, code["slug"], **{"x-forwarded-for": "203.0.113.7"}).status_code == 302
            spooled.append(b"".join(p.read_bytes() for p in client.app.state.spool.directory.glob("seg-*")))
    assert b'"ip":"testclient"' in spooled[0] and b"203.0.113.7" not in spooled[0]
    assert b'"ip":"203.0.113.7"' in spooled[1]


def test_scans_with_odd_headers_are_stored_as_sent(gateway, alice):
    """Header bytes outside ASCII (read as Latin-1, as HTTP says; U+0085 is a line break to
    str.splitlines) travel through the spool as one scan."""
    code = dynamic_code(gateway, alice)
    raw = "Mozilla/5.0 (\x85 Odd\u00e9Agent)".encode()
    assert scan(gateway, code["slug"], **{"user-agent": raw}).status_code == 302
    wait_for_scans(gateway, alice, code["id"], 0)
    deadline = time.monotonic() + 30
    while not (items := gateway.get(f"/v1/qrcodes/{code['id']}/scans", headers=alice.headers).json()["items"]):
        assert time.monotonic() < deadline, "the scan was never stored"
        time.sleep(0.1)
    assert [item["user_agent"] for item in items] == [raw.decode("latin-1")]


def test_a_redelivered_batch_stores_nothing_twice(gateway, alice, backend):
    """The worker's storage step on each database, called as a redelivery would: a batch stored again,
    and one that overlaps it, add only the scans not stored before, to the rows and to scans_total."""
    from sqlalchemy import select

    from app.kit.db import create_sync_engine, sync_sessionmaker
    from app.links.models import Link
    from app.scans.enrichment import Enricher
    from app.scans.events import ScanRecorded
    from app.scans.ingest import record_scans

    code = dynamic_code(gateway, alice)
    engine = create_sync_engine(backend.settings)
    sessions = sync_sessionmaker(engine)
    with sessions() as session:
        link_id = session.scalar(select(Link.id).where(Link.slug == code["slug"]))

    def event(user_agent: str | None, **fields) -> ScanRecorded:
        return ScanRecorded(slug=code["slug"], link_id=link_id, user_agent=user_agent, **fields)

    first = [
        event(IPHONE, referrer="https://news.example.org/ünïcode", ip="203.0.113.9"),
        event(SLACKBOT, ip="203.0.113.10"),
        event(None),  # no header at all: every optional column empty
        event(IPHONE, ip="2001:db8::1"),
    ]
    second = [*first[2:], event(IPHONE, ip="203.0.113.11"), event(SLACKBOT)]
    try:
        enricher = Enricher()
        assert record_scans(sessions, enricher, first) == 4
        assert record_scans(sessions, enricher, first) == 0
        assert record_scans(sessions, enricher, second) == 2
    finally:
        engine.dispose()

    # Three iPhones; not Slackbot twice, nor the scan with no user agent (a program, as bots are).
    assert gateway.get(f"/v1/qrcodes/{code['id']}", headers=alice.headers).json()["scans_total"] == 3
    stored = gateway.get(f"/v1/qrcodes/{code['id']}/scans?limit=100", headers=alice.headers).json()["items"]
    assert sorted(scan["id"] for scan in stored) == sorted(str(e.event_id) for e in [*first, *second[2:]])
    by_id = {scan["id"]: scan for scan in stored}
    assert by_id[str(first[0].event_id)]["referrer_host"] == "news.example.org"
    assert by_id[str(first[1].event_id)]["is_bot"] is True
    assert (by_id[str(first[2].event_id)]["user_agent"], by_id[str(first[2].event_id)]["referrer"]) == (None, None)


def test_a_batch_across_codes_adds_to_each_code_its_own_scans(gateway, alice, backend):
    """One batch holds the scans of many codes: each code's scans_total grows by its own people's scans,
    and a code that only bots fetched stays where it was."""
    from sqlalchemy import select

    from app.kit.db import create_sync_engine, sync_sessionmaker
    from app.links.models import Link
    from app.scans.enrichment import Enricher
    from app.scans.events import ScanRecorded
    from app.scans.ingest import record_scans

    codes = [dynamic_code(gateway, alice) for _ in range(3)]
    engine = create_sync_engine(backend.settings)
    sessions = sync_sessionmaker(engine)
    with sessions() as session:
        link_ids = [session.scalar(select(Link.id).where(Link.slug == code["slug"])) for code in codes]

    def events(code: int, user_agent: str, count: int) -> list[ScanRecorded]:
        slug, link_id = codes[code]["slug"], link_ids[code]
        return [ScanRecorded(slug=slug, link_id=link_id, user_agent=user_agent) for _ in range(count)]

    try:
        batch = [*events(0, IPHONE, 3), *events(1, IPHONE, 1), *events(0, SLACKBOT, 2), *events(2, SLACKBOT, 2)]
        assert record_scans(sessions, Enricher(), batch) == 8
    finally:
        engine.dispose()

    shown = [gateway.get(f"/v1/qrcodes/{code['id']}", headers=alice.headers).json() for code in codes]
    assert [code["scans_total"] for code in shown] == [3, 1, 0]
