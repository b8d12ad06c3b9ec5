"""Caps count people, prefetches are not scans (issue #15): real gateway and worker processes
(`qrflow api`, `qrflow worker`) on a Redis of the test's own, and the in-process gateway, on each database."""

from __future__ import annotations

import pytest

from tests.integration.test_redirect import IPHONE, dynamic_code, scan, wait_for_scans
from tests.integration.test_scan_faults import Platform

# As the apps send them when a link is pasted into a chat.
PREVIEW_FETCHERS = {
    "Slack": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "WhatsApp": "WhatsApp/2.23.20.0 A",
    "Facebook": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitter": "Twitterbot/1.0",
    "Discord": "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "iMessage": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) "
    "Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
}
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36"
)
JUNK = '=HYPERLINK("https://evil.example/","click me")'


@pytest.fixture
def platform(backend, tmp_path):
    platform = Platform(backend, tmp_path)
    yield platform
    platform.stop()


def test_link_previews_never_use_up_nor_exhaust_a_capped_link(platform, alice):
    platform.start_gateway()
    platform.start_worker()
    with platform.client() as client:
        code = dynamic_code(client, alice, max_scans=2)
        slug = code["slug"]
        # Shared in six chats: every app unfurls it, twice; and something that names nothing at all.
        for _ in range(2):
            for user_agent in PREVIEW_FETCHERS.values():
                previewed = scan(client, slug, **{"user-agent": user_agent})
                assert previewed.status_code == 302, user_agent
                assert previewed.headers["location"] == "https://example.com/landing"
        assert scan(client, slug, **{"user-agent": JUNK}).status_code == 302
        # Then the people: both uses are theirs, and the third person is refused.
        assert scan(client, slug).status_code == 302
        assert scan(client, slug, **{"user-agent": ANDROID}).status_code == 302
        refused = scan(client, slug, accept="application/json")
        assert (refused.status_code, refused.json()["code"]) == (410, "gone")
        # Exhausted by people, the link is gone for the fetchers too.
        assert scan(client, slug, **{"user-agent": PREVIEW_FETCHERS["Slack"]}).status_code == 410

        assert platform.wait_stored(slug, 15) == (15, 15)
        assert wait_for_scans(client, alice, code["id"], 2)["scans_total"] == 2
        items = client.get(f"/v1/qrcodes/{code['id']}/scans?limit=100", headers=alice.headers).json()["items"]
        classes = {(item["user_agent"], item["agent_class"]) for item in items}
        assert classes == {(agent, "bot") for agent in PREVIEW_FETCHERS.values()} | {
            (IPHONE, "person"), (ANDROID, "person"), (JUNK, "unknown")
        }


PREFETCHES = [
    {"sec-purpose": "prefetch"},
    {"sec-purpose": "prefetch;prerender"},
    {"purpose": "prefetch"},
    {"x-moz": "prefetch"},
]


def test_prefetches_are_redirected_but_neither_recorded_nor_counted_against_a_cap(gateway, alice):
    code = dynamic_code(gateway, alice, max_scans=1)
    for headers in PREFETCHES * 2:
        prefetched = scan(gateway, code["slug"], **headers)
        assert prefetched.status_code == 302, headers
        assert prefetched.headers["location"] == "https://example.com/landing"
    assert gateway.head(f"/r/{code['slug']}", follow_redirects=False).status_code == 302
    assert scan(gateway, code["slug"]).status_code == 302  # the one person it allows
    assert scan(gateway, code["slug"]).status_code == 410
    assert scan(gateway, code["slug"], **PREFETCHES[0]).status_code == 410
    assert wait_for_scans(gateway, alice, code["id"], 1)["scans_total"] == 1
    items = gateway.get(f"/v1/qrcodes/{code['id']}/scans", headers=alice.headers).json()["items"]
    assert [item["agent_class"] for item in items] == ["person"]


def test_an_uncapped_links_prefetch_leaves_no_scan(gateway, alice):
    code = dynamic_code(gateway, alice)
    for headers in PREFETCHES:
        assert scan(gateway, code["slug"], **headers).status_code == 302
    assert scan(gateway, code["slug"]).status_code == 302
    assert wait_for_scans(gateway, alice, code["id"], 1)["scans_total"] == 1
    items = gateway.get(f"/v1/qrcodes/{code['id']}/scans", headers=alice.headers).json()["items"]
    assert len(items) == 1
