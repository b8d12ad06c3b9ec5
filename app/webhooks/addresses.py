"""SSRF: where a webhook may be sent. Every address a host resolves to is checked, at create time and
again at each delivery, and the delivery connects to an address that was checked (no DNS rebinding
between check and connect)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from app.kit.errors import Invalid


class Refused(Invalid):
    code = "webhook_url_refused"


def check_url(url: str, *, production: bool) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL a webhook may use, or Refused saying why."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError as exc:  # "http://[" and the like
        raise Refused(f"url is not a valid URL: {exc}", field="url") from exc
    if parts.scheme not in ("http", "https") or not hostname:
        raise Refused("url must be an absolute http(s) URL", field="url")
    if production and parts.scheme != "https":
        raise Refused("url must use https in production", field="url")
    if parts.username or parts.password:
        raise Refused("url must not carry credentials", field="url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise Refused(f"url has an invalid port: {exc}", field="url") from exc
    return parts.scheme, hostname, port


def resolve(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Every address of `host`, all of them allowed, or Refused naming the one that is not (blocking:
    the gateway calls it in a thread)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:  # gaierror; a NUL or an over-long name
        raise Refused(f"url's host {host!r} does not resolve: {exc}", field="url") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in found))
    if not allow_private:
        for address in addresses:
            if reason := _forbidden(ipaddress.ip_address(address.split("%", 1)[0])):
                raise Refused(
                    f"url's host {host!r} resolves to {address}, a {reason} address "
                    "(QRFLOW_WEBHOOK_ALLOW_PRIVATE=true allows it)",
                    field="url",
                )
    return addresses


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for reason, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("private", address.is_private),  # RFC 1918, unique-local fc00::/7, and the other special ranges
        ("reserved", address.is_reserved),
    ):
        if flag:
            return reason
    return None
