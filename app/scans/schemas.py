"""The HTTP shapes of stored scans. What a scan shows of its scanner is what was stored: facts derived
from the request and a daily visitor hash, never an IP address (app/scans/enrichment.py)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from app.scans.models import Scan


class ScanOut(BaseModel):
    id: uuid.UUID = Field(description="The scan's event id, given when the redirect answered.")
    scanned_at: datetime = Field(description="When the short link was followed.")
    stored_at: datetime = Field(description="When the scan was recorded, a moment later.")
    device: str = Field(description="`mobile`, `tablet`, `desktop` or `other` (TVs, consoles, bots).")
    os: str | None = Field(None, description="Operating system family, e.g. `iOS`; null when unrecognised.")
    browser: str | None = Field(None, description="Browser family, e.g. `Mobile Safari`; null when unrecognised.")
    is_bot: bool = Field(description="A crawler, a link-preview fetcher or an HTTP tool: not counted in scans_total.")
    agent_class: str = Field(
        description="`person`, `bot` or `unknown` (a user agent naming no browser, OS, device or crawler); only a "
        "person's scan counts in scans_total and the analytics' scans and unique."
    )
    country: str | None = Field(None, description="ISO 3166-1 alpha-2; null when unknown or not configured.")
    referrer: str | None = Field(None, description="The Referer header, as sent.")
    referrer_host: str | None = Field(None, description="The referrer's host name, lower-case.")
    user_agent: str | None = Field(None, description="The User-Agent header, as sent.")
    visitor: str = Field(
        description="Same person (address and user agent), same UTC day: same hash. Not linkable across days."
    )
    ip_anonymized: str | None = Field(
        None,
        description="The scanner's network (IPv4 /24, IPv6 /48), only where the server is set to keep it "
        "(QRFLOW_KEEP_ANONYMIZED_IP).",
    )

    @classmethod
    def from_scan(cls, scan: Scan) -> ScanOut:
        return cls(
            id=scan.event_id,
            scanned_at=scan.scanned_at,
            stored_at=scan.stored_at,
            device=scan.device,
            os=scan.os,
            browser=scan.browser,
            is_bot=scan.is_bot,
            agent_class="bot" if scan.is_bot else scan.agent_class,
            country=scan.country,
            referrer=scan.referrer,
            referrer_host=scan.referrer_host,
            user_agent=scan.user_agent,
            visitor=scan.visitor,
            ip_anonymized=scan.ip_anonymized,
        )


class ScanPage(BaseModel):
    items: list[ScanOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null at the end.")
