"""A dynamic code's link settings (forward_query, expires_at, max_scans, disabled) and its stored scans,
through the real gateway on each database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app.kit.db import create_sync_engine, sync_sessionmaker
from app.links.models import Link
from app.scans import partitions
from app.scans.models import Scan
from tests.integration.test_qrcodes_api import count_codes, create, created

URL = {"kind": "url", "data": {"url": "https://example.com/campaign"}}
LINK_SETTINGS = ("forward_query", "expires_at", "max_scans", "disabled")
SCAN_FIELDS = {
    "id", "scanned_at", "stored_at", "device", "os", "browser", "is_bot", "agent_class", "country", "referrer",
    "referrer_host", "user_agent", "visitor", "ip_anonymized",
}


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def future(days: int = 30) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


def test_create_with_every_setting_and_read_it_back(gateway, alice):
    expires_at = future().astimezone(timezone(timedelta(hours=2)))  # comes back as the same instant, in UTC
    body = {**URL, "forward_query": True, "expires_at": expires_at.isoformat(), "max_scans": 500, "disabled": True}
    code = created(gateway, alice, body)
    for shown in (code, gateway.get(f"/v1/qrcodes/{code['id']}", headers=alice.headers).json()):
        assert shown["forward_query"] is True and shown["disabled"] is True and shown["max_scans"] == 500
        assert instant(shown["expires_at"]) == expires_at
        assert shown["scans_total"] == 0


@pytest.mark.parametrize(("setting", "value"), [("forward_query", True), ("max_scans", 1), ("disabled", True)])
def test_each_setting_alone(gateway, alice, setting, value):
    code = created(gateway, alice, {**URL, setting: value})
    assert code[setting] == value


def test_defaults_of_a_dynamic_code_and_nulls_of_a_static_one(gateway, alice):
    dynamic = created(gateway, alice, URL)
    assert (dynamic["forward_query"], dynamic["expires_at"], dynamic["max_scans"], dynamic["disabled"]) == (
        False, None, None, False
    )
    assert dynamic["scans_total"] == 0
    static = created(gateway, alice, {**URL, "dynamic": False})
    assert all(static[name] is None for name in (*LINK_SETTINGS, "scans_total"))


@pytest.mark.parametrize(
    ("extra", "field", "type_", "message"),
    [
        ({"dynamic": False, "max_scans": 3}, "max_scans", "value_error", "applies only to dynamic codes"),
        ({"dynamic": False, "forward_query": True}, "forward_query", "value_error", "applies only to dynamic codes"),
        ({"dynamic": False, "disabled": True}, "disabled", "value_error", "applies only to dynamic codes"),
        ({"dynamic": False, "expires_at": "2099-01-01T00:00:00Z"}, "expires_at", "value_error", "dynamic codes"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at", "value_error", "expires_at is in the past"),
        ({"expires_at": "2099-01-01T00:00:00"}, "expires_at", "timezone_aware", "timezone"),
        ({"expires_at": "9999-12-31T23:00:00-14:00"}, "expires_at", "value_error", "out of range"),
        ({"max_scans": 0}, "max_scans", "greater_than_equal", "greater than or equal to 1"),
        ({"max_scans": 2**31}, "max_scans", "less_than_equal", "less than or equal"),
    ],
)
def test_invalid_settings_are_422_naming_the_field_and_write_nothing(gateway, alice, extra, field, type_, message):
    before = count_codes(gateway, alice)
    response = create(gateway, alice, {**URL, **extra})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "validation_error"
    assert [(e["field"], e["type"]) for e in error["errors"]] == [(field, type_)], error
    assert message in error["errors"][0]["message"] and field in error["message"]
    assert count_codes(gateway, alice) == before


def test_a_static_code_names_every_setting_it_was_given(gateway, alice):
    response = create(gateway, alice, {**URL, "dynamic": False, "max_scans": 3, "disabled": True})
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"max_scans", "disabled"}


def test_patch_sets_and_clears_the_settings(gateway, alice):
    code = created(gateway, alice, URL)
    url = f"/v1/qrcodes/{code['id']}"
    expires_at = future(days=7)
    changes = {"forward_query": True, "expires_at": expires_at.isoformat(), "max_scans": 10, "disabled": True}
    patched = gateway.patch(url, json=changes, headers=alice.headers)
    assert patched.status_code == 200, patched.text
    for shown in (patched.json(), gateway.get(url, headers=alice.headers).json()):
        assert (shown["forward_query"], shown["max_scans"], shown["disabled"]) == (True, 10, True)
        assert instant(shown["expires_at"]) == expires_at

    cleared = gateway.patch(url, json={"expires_at": None, "max_scans": None}, headers=alice.headers).json()
    assert (cleared["expires_at"], cleared["max_scans"]) == (None, None)
    assert (cleared["forward_query"], cleared["disabled"]) == (True, True)  # untouched: not in the PATCH
    enabled = gateway.patch(url, json={"disabled": False, "forward_query": False}, headers=alice.headers).json()
    assert (enabled["disabled"], enabled["forward_query"]) == (False, False)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"disabled": None}, "disabled"),
        ({"forward_query": None}, "forward_query"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "2099-01-01T00:00:00"}, "expires_at"),
        ({"max_scans": 0}, "max_scans"),
    ],
)
def test_invalid_patch_is_422_naming_the_field_and_changes_nothing(gateway, alice, changes, field):
    code = created(gateway, alice, {**URL, "max_scans": 5, "title": "before"})
    url = f"/v1/qrcodes/{code['id']}"
    response = gateway.patch(url, json={**changes, "title": "after"}, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field
    unchanged = gateway.get(url, headers=alice.headers).json()
    assert (unchanged["title"], unchanged["max_scans"], unchanged["disabled"]) == ("before", 5, False)


@pytest.mark.parametrize("setting", [{"max_scans": 3}, {"expires_at": "2099-01-01T00:00:00Z"}, {"disabled": True}])
def test_patching_a_static_codes_settings_is_422(gateway, alice, setting):
    code = created(gateway, alice, {"kind": "text", "data": {"text": "static"}})
    response = gateway.patch(f"/v1/qrcodes/{code['id']}", json=setting, headers=alice.headers)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == next(iter(setting))


def test_every_committed_link_change_is_announced_to_the_redirect_caches(gateway, alice, backend, monkeypatch):
    """Creation too (a cache remembers unknown slugs), and only after the commit: what another connection
    reads when the announcement arrives is already the new state."""
    engine = create_sync_engine(backend.settings)
    announced: list[tuple[str, int | None, bool] | None] = []
    cache = gateway.app.state.link_cache
    original = cache.changed

    async def spy(slug: str) -> None:
        with sync_sessionmaker(engine)() as session:
            link = session.scalar(select(Link).where(Link.slug == slug))
            announced.append(None if link is None else (slug, link.max_scans, link.deleted_at is not None))
        await original(slug)

    monkeypatch.setattr(cache, "changed", spy)
    try:
        created(gateway, alice, {"kind": "text", "data": {"text": "no link"}})
        assert announced == []
        code = created(gateway, alice, URL)
        slug, url = code["slug"], f"/v1/qrcodes/{code['id']}"
        assert announced == [(slug, None, False)]
        gateway.patch(url, json={"title": "not the link"}, headers=alice.headers)
        assert len(announced) == 1
        gateway.patch(url, json={"max_scans": 7}, headers=alice.headers)
        assert announced[-1] == (slug, 7, False)
        gateway.delete(url, headers=alice.headers)
        assert announced[-1] == (slug, 7, True) and len(announced) == 3
    finally:
        engine.dispose()


def test_a_fresh_code_has_an_empty_page_of_scans(gateway, alice, alice_reader):
    dynamic = created(gateway, alice, URL)
    static = created(gateway, alice, {"kind": "text", "data": {"text": "no scans reach us"}})
    for code in (dynamic, static):
        response = gateway.get(f"/v1/qrcodes/{code['id']}/scans", headers=alice_reader.headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"items": [], "next_cursor": None}


def test_scans_are_private_to_the_workspace_and_need_a_key(gateway, alice, bob):
    code = created(gateway, alice, URL)
    url = f"/v1/qrcodes/{code['id']}/scans"
    assert gateway.get(url, headers=bob.headers).status_code == 404
    assert gateway.get(f"/v1/qrcodes/{uuid.uuid4()}/scans", headers=alice.headers).status_code == 404
    assert gateway.get(url).status_code == 401
    bad = gateway.get(f"{url}?cursor=garbage!", headers=alice.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"
    assert gateway.get(f"{url}?limit=0", headers=alice.headers).status_code == 422


def _insert_scans(backend, slug: str, times: list[datetime]) -> list[uuid.UUID]:
    engine = create_sync_engine(backend.settings)
    with sync_sessionmaker(engine).begin() as session:
        if partitions.is_partitioned(session):  # the months' partitions, as ingestion makes them
            partitions.ensure(session, {partitions.month_of(at) for at in times})
        link_id = session.scalar(select(Link.id).where(Link.slug == slug))
        scans = [
            Scan(
                event_id=uuid.uuid4(), link_id=link_id, scanned_at=at, user_agent=f"agent {i}",
                referrer="https://news.example/post", referrer_host="news.example", browser="Mobile Safari",
                os="iOS", device="mobile", is_bot=i == 0, country="DE", visitor=f"{i:032x}",
                ip_anonymized="203.0.113.0",
            )
            for i, at in enumerate(times)
        ]
        session.add_all(scans)
    engine.dispose()
    return [scan.event_id for scan in scans]


def test_scans_page_newest_first_and_never_show_an_ip(gateway, alice, backend):
    code = created(gateway, alice, URL)
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    # Two scans in the same microsecond: the event id orders them, and no page boundary loses one.
    times = [start + timedelta(seconds=s) for s in (0, 5, 5, 60, 3600)]
    ids = _insert_scans(backend, code["slug"], times)
    expected = [str(i) for _, i in sorted(zip(times, ids, strict=True), reverse=True)]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = gateway.get(f"/v1/qrcodes/{code['id']}/scans", params=params, headers=alice.headers).json()
        pages += 1
        assert len(page["items"]) <= 2
        for item in page["items"]:
            assert set(item) == SCAN_FIELDS and "ip" not in item
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [item["id"] for item in seen] == expected
    newest, oldest = seen[0], seen[-1]
    assert instant(newest["scanned_at"]) == start + timedelta(hours=1)
    assert (oldest["is_bot"], oldest["user_agent"], oldest["ip_anonymized"]) == (True, "agent 0", "203.0.113.0")
    assert (newest["device"], newest["os"], newest["browser"]) == ("mobile", "iOS", "Mobile Safari")
    assert (newest["country"], newest["visitor"]) == ("DE", f"{4:032x}")
    assert (newest["referrer"], newest["referrer_host"]) == ("https://news.example/post", "news.example")
    assert instant(newest["stored_at"]) > instant(newest["scanned_at"])
