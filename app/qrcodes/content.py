"""What each kind of code holds, and the exact string its symbol encodes.

Formats follow what phone scanners read: WIFI:…;; (ZXing's Wi-Fi format), vCard 3.0, mailto: (RFC 6068),
SMSTO:, tel: (RFC 3966) and geo: (RFC 5870). Pure Python: the gateway validates with it, workers render it.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, model_validator

from app.links.targets import TargetURL

Kind = Literal["url", "text", "wifi", "vcard", "email", "sms", "phone", "geo"]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]

PhoneNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 ()./-]{1,30}$")
]
ShortText = Annotated[str, StringConstraints(max_length=500)]


def _digits(number: str) -> str:
    """tel: and SMSTO: want the bare number: keep the leading + and the digits."""
    return ("+" if number.startswith("+") else "") + re.sub(r"\D", "", number)


class _KindData(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    def content(self) -> str:
        raise NotImplementedError


class URLData(_KindData):
    url: TargetURL

    def content(self) -> str:
        return self.url


class TextData(_KindData):
    text: Annotated[str, StringConstraints(min_length=1, max_length=8000)]

    def content(self) -> str:
        return self.text


def _escape_wifi(value: str) -> str:
    return re.sub(r'([\\;,":])', r"\\\1", value)


class WifiData(_KindData):
    ssid: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    password: Annotated[str, StringConstraints(max_length=63)] | None = None
    security: Literal["WPA", "WEP", "nopass"] = "WPA"
    hidden: bool = False

    @model_validator(mode="after")
    def _password_matches_security(self) -> WifiData:
        if self.security == "nopass" and self.password:
            raise ValueError("password must be empty when security is nopass")
        if self.security != "nopass" and not self.password:
            raise ValueError(f"password is required when security is {self.security}")
        return self

    def content(self) -> str:
        fields = [f"T:{self.security}", f"S:{_escape_wifi(self.ssid)}"]
        if self.password:
            fields.append(f"P:{_escape_wifi(self.password)}")
        if self.hidden:
            fields.append("H:true")
        return "WIFI:" + ";".join(fields) + ";;"


def _escape_vcard(value: str) -> str:
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return value.replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n")


class VCardData(_KindData):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    phone: PhoneNumber | None = None
    email: EmailStr | None = None
    org: ShortText | None = None
    title: ShortText | None = None
    url: TargetURL | None = None
    address: ShortText | None = None

    def content(self) -> str:
        given, _, family = self.name.rpartition(" ")
        lines = [
            "BEGIN:VCARD",
            "VERSION:3.0",
            f"N:{_escape_vcard(family)};{_escape_vcard(given)};;;",
            f"FN:{_escape_vcard(self.name)}",
        ]
        if self.org:
            lines.append(f"ORG:{_escape_vcard(self.org)}")
        if self.title:
            lines.append(f"TITLE:{_escape_vcard(self.title)}")
        if self.phone:
            lines.append(f"TEL:{_digits(self.phone)}")
        if self.email:
            lines.append(f"EMAIL:{self.email}")
        if self.url:
            lines.append(f"URL:{self.url}")
        if self.address:
            # ADR's seven components; a free-form address goes in the street component.
            lines.append(f"ADR:;;{_escape_vcard(self.address)};;;;")
        lines.append("END:VCARD")
        return "\r\n".join(lines)


class EmailData(_KindData):
    to: EmailStr
    subject: ShortText | None = None
    body: Annotated[str, StringConstraints(max_length=2000)] | None = None

    def content(self) -> str:
        query = [
            f"{name}={quote(value, safe='')}"
            for name, value in (("subject", self.subject), ("body", self.body))
            if value
        ]
        # ? # % are legal in an address's local part but would end the address in a URI.
        to = quote(self.to, safe="@!$'()*+,;:")
        return f"mailto:{to}" + ("?" + "&".join(query) if query else "")


class SMSData(_KindData):
    number: PhoneNumber
    text: ShortText | None = None

    def content(self) -> str:
        return f"SMSTO:{_digits(self.number)}:{self.text or ''}"


class PhoneData(_KindData):
    number: PhoneNumber

    def content(self) -> str:
        return f"tel:{_digits(self.number)}"


def _coordinate(value: float) -> str:
    """Shortest exact decimal, never scientific notation (repr gives 1e-05 near 0°)."""
    return format(Decimal(repr(value)), "f")


class GeoData(_KindData):
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)

    def content(self) -> str:
        return f"geo:{_coordinate(self.lat)},{_coordinate(self.lng)}"


KIND_DATA: dict[str, type[_KindData]] = {
    "url": URLData,
    "text": TextData,
    "wifi": WifiData,
    "vcard": VCardData,
    "email": EmailData,
    "sms": SMSData,
    "phone": PhoneData,
    "geo": GeoData,
}
