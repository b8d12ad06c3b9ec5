"""What a scan tells us, derived in the scan worker from what the gateway recorded.

The redirect stores only the raw user agent, referrer and client IP, so that it can answer at once.
The worker turns them into the facts the analytics count — browser, OS, device type, bot or not,
referring site, country — and, by default, drops the IP: only an anonymised prefix is kept when asked,
and unique visitors are counted through `visitor_hash`, which a daily salt makes impossible to link
across days or back to an address.

This module is pure and fast: no database, no settings, no network. The user-agent part is
app/scans/agents.py's verdict, cached per string; the GeoIP database is memory-mapped.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import maxminddb

from app.scans import agents
from app.scans.agents import AgentClass


@dataclass(frozen=True)
class ScanFacts:
    browser: str | None  # ua-parser's user-agent family, e.g. "Mobile Safari"
    os: str | None  # ua-parser's OS family, e.g. "iOS"
    device: str  # "mobile", "tablet", "desktop" or "other"
    agent_class: AgentClass  # person, bot or unknown (app/scans/agents.py): only people are counted
    referrer_host: str | None  # lower-case host of the Referer
    country: str | None  # ISO 3166-1 alpha-2
    ip_anonymized: str | None  # IPv4 /24 or IPv6 /48 network address, only when asked for

    @property
    def is_bot(self) -> bool:  # crawlers, link-preview fetchers, HTTP tools, no user agent
        return self.agent_class == "bot"


def _referrer_host(referrer: str | None) -> str | None:
    if not referrer:
        return None
    try:
        # The host comes first, so a cut keeps it; hostname is already lower-cased.
        host = urlsplit(referrer[:2048].strip()).hostname
    except ValueError:  # e.g. an unclosed "[" of an IPv6 literal
        return None
    if not host or len(host) > 253 or not host.isprintable() or " " in host:  # 253: longest DNS name
        return None
    return host.rstrip(".") or None


# Cached: parsing an address took a fifth of the worker's time per scan, and a batch repeats addresses
# (one person scanning again, many people behind one NAT).
@functools.lru_cache(maxsize=65_536)
def _ip(ip: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not ip or len(ip) > 64:
        return None
    try:
        # Most addresses are plain IPv4, which the C parser reads in a third of ipaddress's time; it is
        # as strict (no leading zeros, four parts) and refuses the rest, which take the general path.
        return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, ip))
    except (OSError, ValueError):
        pass
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        # IPv4-mapped IPv6 (::ffff:a.b.c.d, from dual-stack sockets) is that IPv4 address; a zone
        # ("%eth0") only means something on the machine that saw it.
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return ipaddress.IPv6Address(int(address))
    return address


def _anonymize(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    # /24 and /48 are what a network is routed as: enough for "which ISP/region", not for "who".
    host_bits = 8 if address.version == 4 else 128 - 48
    return str(type(address)(int(address) >> host_bits << host_bits))


class Enricher:
    """Derives `ScanFacts`; one per worker process, since it holds the GeoIP database open.

    `geoip_db` is a MaxMind GeoIP2/GeoLite2 Country or City .mmdb file (not downloaded here); without it
    `country` is always None. A missing or corrupt file raises at construction, not on every scan.
    """

    def __init__(self, geoip_db: Path | None = None, keep_anonymized_ip: bool = False) -> None:
        self._geoip = maxminddb.open_database(str(geoip_db)) if geoip_db is not None else None
        self._keep_anonymized_ip = keep_anonymized_ip
        agents.load()  # compile the user-agent rules now rather than on the first scan

    def enrich(self, user_agent: str | None, referrer: str | None, ip: str | None) -> ScanFacts:
        agent = agents.classify(user_agent)
        address = _ip(ip)
        return ScanFacts(
            browser=agent.browser,
            os=agent.os,
            device=agent.device,
            agent_class=agent.agent_class,
            referrer_host=_referrer_host(referrer),
            country=self._country(address),
            ip_anonymized=_anonymize(address) if address is not None and self._keep_anonymized_ip else None,
        )

    def _country(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> str | None:
        # Private, loopback, documentation and multicast addresses have no country, whatever a db says.
        if self._geoip is None or address is None or not address.is_global or address.is_multicast:
            return None
        try:
            record = self._geoip.get(address)
        except (ValueError, maxminddb.InvalidDatabaseError):  # e.g. IPv6 in an IPv4-only db
            return None
        if not isinstance(record, dict):
            return None
        # registered_country: where the block is registered, for anycast and satellite networks
        # that GeoIP cannot place.
        for key in ("country", "registered_country"):
            place = record.get(key)
            code = place.get("iso_code") if isinstance(place, dict) else None
            if isinstance(code, str) and len(code) == 2:
                return code.upper()
        return None

    def close(self) -> None:
        if self._geoip is not None:
            self._geoip.close()
            self._geoip = None


def visitor_hash(salt: bytes, ip: str | None, user_agent: str | None) -> str:
    """Hex digest (32 hex chars) identifying a visitor for one day without storing the IP.

    Keyed BLAKE2b over ip + NUL + user agent, with the day's random salt (1 to 64 bytes) as the key:
    once the salt is thrown away the next day, the hash cannot be tied to an address, even by trying
    all 2^32 IPv4 addresses. The IP is normalised first, so "::ffff:1.2.3.4" and "1.2.3.4" are one
    visitor.
    """
    if not salt:
        raise ValueError("visitor_hash needs a salt: without one the hash can be reversed")
    text = f"{_ip_text(ip)}\0{user_agent or ''}"
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=salt, digest_size=16)
    return digest.hexdigest()


@functools.lru_cache(maxsize=65_536)
def _ip_text(ip: str | None) -> str:
    """The address as visitor_hash spells it: normalised when it parses, as given when it does not."""
    address = _ip(ip)
    return str(address) if address is not None else ip or ""
