"""Scan enrichment: real user agents, referrers, IP anonymisation, visitor hashes and a tiny GeoIP db."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from app.scans.enrichment import Enricher, ScanFacts, visitor_hash

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36"
)
# Chrome's reduced user agent: the model is always "K", so only "Mobile" tells a phone from a tablet.
ANDROID_PHONE_REDUCED = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Safari/537.36"
)
ANDROID_TABLET_REDUCED = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
KINDLE = (
    "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/124.2.1 "
    "like Chrome/124.0.6367.118 Safari/537.36"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
MAC_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15"
)
LINUX_FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
CHROMEOS = (
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
SMART_TV = (
    "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36"
)
ANDROID_TV = (
    "Mozilla/5.0 (Linux; Android 9; SHIELD Android TV Build/PPR1.180610.011) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
GOOGLEBOT_SMARTPHONE = (
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.201 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)

PEOPLE = [
    # user agent, browser, os, device
    (IPHONE, "Mobile Safari", "iOS", "mobile"),
    (ANDROID_PHONE, "Chrome Mobile", "Android", "mobile"),
    (ANDROID_PHONE_REDUCED, "Chrome Mobile", "Android", "mobile"),
    (IPAD, "Mobile Safari", "iOS", "tablet"),
    (ANDROID_TABLET, "Chrome", "Android", "tablet"),
    (ANDROID_TABLET_REDUCED, "Chrome", "Android", "tablet"),
    (KINDLE, "Amazon Silk", "Android", "tablet"),
    (WINDOWS_CHROME, "Chrome", "Windows", "desktop"),
    (MAC_SAFARI, "Safari", "Mac OS X", "desktop"),
    (LINUX_FIREFOX, "Firefox", "Linux", "desktop"),
    (CHROMEOS, "Chrome", "Chrome OS", "desktop"),
    (SMART_TV, "Samsung Internet", "Tizen", "other"),
    (ANDROID_TV, "Chrome", "Android", "other"),
]

BOTS = [
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Slack-ImgProxy (+https://api.slack.com/robots)",
    "WhatsApp/2.23.20.0",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "TelegramBot (like TwitterBot)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    GOOGLEBOT_SMARTPHONE,
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
    "Wget/1.21.4",
    "python-requests/2.31.0",
    "python-httpx/0.27.0",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 "
    "Safari/537.36",
    "",
    "   ",
    None,
]


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    return Enricher()


@pytest.mark.parametrize(("user_agent", "browser", "os", "device"), PEOPLE)
def test_people_get_browser_os_and_device(
    enricher: Enricher, user_agent: str, browser: str, os: str, device: str
) -> None:
    facts = enricher.enrich(user_agent, None, None)
    assert (facts.browser, facts.os, facts.device, facts.is_bot) == (browser, os, device, False)


@pytest.mark.parametrize("user_agent", BOTS)
def test_crawlers_preview_fetchers_http_tools_and_no_user_agent_are_bots(
    enricher: Enricher, user_agent: str | None
) -> None:
    facts = enricher.enrich(user_agent, None, None)
    assert facts.is_bot
    assert facts.device == "other"


def test_a_person_in_an_app_that_also_has_a_preview_fetcher_is_no_bot(enricher: Enricher) -> None:
    slack_desktop = (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Slack/4.36.140 Chrome/120.0.6099.56 Electron/28.0.0 Safari/537.36 Sonic Slack_SSB/4.36.140"
    )
    assert enricher.enrich(slack_desktop, None, None).is_bot is False


def test_unknown_families_are_none(enricher: Enricher) -> None:
    facts = enricher.enrich("something nobody has heard of", None, None)
    assert (facts.browser, facts.os, facts.device) == (None, None, "other")


@pytest.mark.parametrize(
    ("referrer", "host"),
    [
        ("https://WWW.Google.com/search?q=qr", "www.google.com"),
        ("http://l.instagram.com/?u=https%3A%2F%2Fexample.com", "l.instagram.com"),
        ("https://example.com.:8443/path", "example.com"),
        ("https://[2001:DB8::1]/", "2001:db8::1"),
        ("android-app://com.google.android.gm/", "com.google.android.gm"),
        ("https://user:pw@example.org/", "example.org"),
        (None, None),
        ("", None),
        ("example.com/no-scheme", None),
        ("not a url at all", None),
        ("javascript:alert(1)", None),
        ("http://[::1", None),
        ("http://bad host/", None),
        ("https://" + "a" * 300 + ".com/", None),
        ("\ud800http://x.com/", None),
    ],
)
def test_referrer_host(enricher: Enricher, referrer: str | None, host: str | None) -> None:
    assert enricher.enrich(IPHONE, referrer, None).referrer_host == host


@pytest.mark.parametrize(
    ("ip", "anonymized"),
    [
        ("81.2.69.142", "81.2.69.0"),
        (" 192.168.1.77 ", "192.168.1.0"),
        ("::ffff:81.2.69.142", "81.2.69.0"),  # IPv4 seen through a dual-stack socket
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
        ("2001:DB8::1", "2001:db8::"),
        ("fe80::1%eth0", "fe80::"),
        ("not an ip", None),
        ("81.2.69.142:443", None),
        ("999.1.1.1", None),
        ("081.2.69.142", None),  # a leading zero: octal to some parsers, refused by ipaddress
        ("81.2.69", None),
        ("1" * 10_000, None),
        ("", None),
        (None, None),
    ],
)
def test_ip_is_kept_only_anonymized(ip: str | None, anonymized: str | None) -> None:
    enricher = Enricher(keep_anonymized_ip=True)
    assert enricher.enrich(IPHONE, None, ip).ip_anonymized == anonymized


@given(st.text(alphabet="0123456789. x+-\t", max_size=20) | st.ip_addresses(v=4).map(str))
def test_an_ipv4_address_reads_as_the_standard_library_reads_it(text: str) -> None:
    # The C fast path for IPv4 (app/scans/enrichment.py _ip) must accept no more than ipaddress does.
    try:
        network = ipaddress.ip_network(f"{ipaddress.ip_address(text.strip())}/24", strict=False)
        expected = str(network.network_address)
    except ValueError:
        expected = None
    assert Enricher(keep_anonymized_ip=True).enrich(IPHONE, None, text).ip_anonymized == expected


def test_no_ip_at_all_unless_asked_for(enricher: Enricher) -> None:
    assert enricher.enrich(IPHONE, None, "81.2.69.142").ip_anonymized is None


def test_garbage_never_raises(enricher: Enricher) -> None:
    for junk in ["\x00" * 50, "\ud800\udfff", "A" * 1_000_000, "%" * 5000, "[" * 100, "\n\r\t"]:
        facts = enricher.enrich(junk, junk, junk)
        assert isinstance(facts, ScanFacts)
        assert facts.country is None and facts.ip_anonymized is None


def test_visitor_hash() -> None:
    salt, other_salt = b"s" * 16, b"t" * 16
    ip = "81.2.69.142"
    digest = visitor_hash(salt, ip, IPHONE)

    assert re.fullmatch(r"[0-9a-f]{32}", digest)
    assert visitor_hash(salt, ip, IPHONE) == digest
    assert visitor_hash(other_salt, ip, IPHONE) != digest
    assert visitor_hash(salt, "81.2.69.143", IPHONE) != digest
    assert visitor_hash(salt, ip, WINDOWS_CHROME) != digest
    assert visitor_hash(salt, "::ffff:81.2.69.142", IPHONE) == digest  # one address, two spellings
    for part in (ip, ip.replace(".", ""), "5102458e"):  # 81.2.69.142 dotted, as digits, in hex
        assert part not in digest


def test_visitor_hash_tolerates_missing_and_garbage_parts() -> None:
    assert visitor_hash(b"salt", None, None) != visitor_hash(b"salt", "", "x")
    assert re.fullmatch(r"[0-9a-f]{32}", visitor_hash(b"salt", "\ud800", "\ud800"))


def test_visitor_hash_refuses_an_empty_salt() -> None:
    with pytest.raises(ValueError):
        visitor_hash(b"", "81.2.69.142", IPHONE)


@pytest.fixture(scope="module")
def geoip_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GeoLite2-Country-shaped database with three networks, one of them in a documentation range."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "GB", "names": {"en": "UK"}}})
    # Only the registered country, as MaxMind gives for some anycast networks.
    writer.insert_network(IPSet(["2001:4860::/32"]), {"registered_country": {"iso_code": "US"}})
    # Not a public network: a lookup must never get this far.
    writer.insert_network(IPSet(["2001:db8::/32"]), {"country": {"iso_code": "SE"}})
    path = tmp_path_factory.mktemp("geoip") / "test-country.mmdb"
    writer.to_db_file(str(path))
    return path


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        ("81.2.69.142", "GB"),
        ("::ffff:81.2.69.142", "GB"),
        ("2001:4860:4860::8888", "US"),
        ("8.8.8.8", None),  # in no network of the db
        ("2a00:1450::1", None),
        ("2001:db8::1", None),  # documentation range
        ("192.168.1.1", None),
        ("127.0.0.1", None),
        ("not an ip", None),
        (None, None),
    ],
)
def test_country_from_geoip_db(geoip_db: Path, ip: str | None, country: str | None) -> None:
    enricher = Enricher(geoip_db=geoip_db)
    try:
        assert enricher.enrich(IPHONE, None, ip).country == country
    finally:
        enricher.close()


def test_ipv6_lookup_in_an_ipv4_only_db_is_unknown(tmp_path: Path) -> None:
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "GB"}})
    path = tmp_path / "v4.mmdb"
    writer.to_db_file(str(path))
    enricher = Enricher(geoip_db=path)
    assert enricher.enrich(None, None, "81.2.69.1").country == "GB"
    assert enricher.enrich(None, None, "2001:4860::1").country is None
    enricher.close()


def test_no_db_means_no_country(enricher: Enricher) -> None:
    assert enricher.enrich(IPHONE, None, "81.2.69.142").country is None


def test_a_missing_db_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Enricher(geoip_db=tmp_path / "absent.mmdb")


def test_close_is_idempotent(geoip_db: Path) -> None:
    enricher = Enricher(geoip_db=geoip_db)
    enricher.close()
    enricher.close()
