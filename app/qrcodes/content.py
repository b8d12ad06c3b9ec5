"""What each kind of code holds, and the exact string its symbol encodes.

Formats follow what phone scanners read: WIFI:…;; (ZXing's Wi-Fi format), vCard 3.0, mailto: (RFC 6068),
SMSTO:, tel: (RFC 3966), geo: (RFC 5870), an iCalendar VEVENT (RFC 5545), MECARD: (DoCoMo) and the EPC
payment code (EPC069-12, "BCD" version 002, as segno.helpers.make_epc_qr writes it). Pure Python: the
gateway validates with it, workers render it.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, ClassVar, Literal
from urllib.parse import quote

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum import iso11649

from app.links.targets import TargetURL
from app.qrcodes.symbol import FREE, SymbolRules, plan_encoding

Kind = Literal["url", "text", "wifi", "vcard", "email", "sms", "phone", "geo", "event", "mecard", "epc"]
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
    # What the kind's own standard fixes about the symbol (the capacity check and the renderer both obey).
    symbol: ClassVar[SymbolRules] = FREE

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


def _escape_docomo(value: str, keep: str = "") -> str:
    """WIFI: and MECARD: (both DoCoMo formats): a backslash before each of \\ ; , " : (but those in keep)."""
    special = "".join(ch for ch in '\\;,":' if ch not in keep)
    return re.sub(f"([{re.escape(special)}])", r"\\\1", value)


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
        fields = [f"T:{self.security}", f"S:{_escape_docomo(self.ssid)}"]
        if self.password:
            fields.append(f"P:{_escape_docomo(self.password)}")
        if self.hidden:
            fields.append("H:true")
        return "WIFI:" + ";".join(fields) + ";;"


def _escape_vcard(value: str) -> str:
    """vCard 3.0 (RFC 2426) and iCalendar (RFC 5545) TEXT alike: \\ ; , escaped, line breaks as \\n."""
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


# Fields that become one line of a line-based format (EPC) must not hold a line break, or any control.
OneLine = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$")]


def _utc_seconds(value: datetime) -> datetime:
    """In UTC, to the second: what a DTSTART/DTEND in UTC form holds. A time UTC cannot hold
    (0001-01-01T00:00-01:00) is a 422 here rather than an error when the content is built."""
    try:
        return value.astimezone(UTC).replace(microsecond=0)
    except OverflowError:
        raise ValueError("the time is out of range") from None


def _ical_utc(value: datetime) -> str:
    # Zero-padded explicitly: strftime's %Y does not pad years before 1000 on every platform.
    return (
        f"{value.year:04d}{value.month:02d}{value.day:02d}T"
        f"{value.hour:02d}{value.minute:02d}{value.second:02d}Z"
    )


class EventData(_KindData):
    summary: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    start: Annotated[AwareDatetime, AfterValidator(_utc_seconds)] = Field(
        description="With a time zone; stored and encoded in UTC, to the second."
    )
    end: Annotated[AwareDatetime, AfterValidator(_utc_seconds)] = Field(description="After start.")
    location: ShortText | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")  # absent when start itself was refused
        if start is not None and end <= start:
            raise ValueError("end must be after start")
        return end

    def content(self) -> str:
        # A bare VEVENT, as scanners (ZXing, iOS, Android) read it from a QR code; lines are not folded:
        # folding is a SHOULD of RFC 5545 for files, and only lengthens the symbol.
        lines = [
            "BEGIN:VEVENT",
            f"SUMMARY:{_escape_vcard(self.summary)}",
            f"DTSTART:{_ical_utc(self.start)}",
            f"DTEND:{_ical_utc(self.end)}",
        ]
        if self.location:
            lines.append(f"LOCATION:{_escape_vcard(self.location)}")
        if self.description:
            lines.append(f"DESCRIPTION:{_escape_vcard(self.description)}")
        lines.append("END:VEVENT")
        return "\r\n".join(lines)


class MeCardData(_KindData):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description='"Last,First" or a whole name.'
    )
    reading: ShortText | None = Field(None, description="How the name is read (kana), MECARD's SOUND.")
    phones: list[PhoneNumber] = Field(default_factory=list, max_length=5)
    email: EmailStr | None = None
    url: TargetURL | None = None
    address: ShortText | None = None
    birthday: date | None = None
    memo: Annotated[str, StringConstraints(max_length=1000)] | None = None
    nickname: ShortText | None = None

    def content(self) -> str:
        # segno.helpers.make_mecard_data's order; each field ends with ';', the record with one more.
        # In N, a comma separates last name from first (DoCoMo's rule, and segno's): it stays as it is.
        fields = [f"N:{_escape_docomo(self.name, keep=',')}"]
        if self.reading:
            fields.append(f"SOUND:{_escape_docomo(self.reading)}")
        fields += [f"TEL:{_digits(phone)}" for phone in self.phones]
        if self.email:
            fields.append(f"EMAIL:{_escape_docomo(self.email)}")
        if self.nickname:
            fields.append(f"NICKNAME:{_escape_docomo(self.nickname)}")
        if self.birthday:
            fields.append(f"BDAY:{self.birthday.year:04d}{self.birthday.month:02d}{self.birthday.day:02d}")
        if self.url:
            fields.append(f"URL:{_escape_docomo(self.url)}")
        if self.address:
            fields.append(f"ADR:{_escape_docomo(self.address)}")
        if self.memo:
            fields.append(f"MEMO:{_escape_docomo(self.memo)}")
        return "MECARD:" + "".join(f"{field};" for field in fields) + ";"


def _standard_number(module: object, what: str) -> BeforeValidator:
    """python-stdnum's validate(): compacts (spaces out, upper case) and checks format and check digits."""

    def check(value: object) -> object:
        if not isinstance(value, str) or len(value) > 64:
            return value  # the type and length constraints answer
        try:
            return module.validate(value)  # type: ignore[attr-defined]
        except ValueError as exc:  # stdnum's ValidationError is a ValueError
            raise ValueError(f"not a valid {what}: {str(exc).rstrip('.').lower()}") from None

    return BeforeValidator(check)


IBAN = Annotated[str, _standard_number(stdnum_iban, "IBAN"), StringConstraints(max_length=34)]
BIC = Annotated[str, _standard_number(stdnum_bic, "BIC"), StringConstraints(max_length=11)]
CreditorReference = Annotated[
    str, _standard_number(iso11649, "ISO 11649 creditor reference"), StringConstraints(max_length=35)
]


class EPCData(_KindData):
    # The EPC guidelines fix level M and at most version 13 (segno's make_epc_qr obeys the same).
    symbol: ClassVar[SymbolRules] = SymbolRules(error="M", max_version=13)

    name: Annotated[OneLine, StringConstraints(min_length=1, max_length=70)] = Field(
        description="The beneficiary."
    )
    iban: IBAN = Field(description="Spaces allowed; check digits verified.")
    bic: BIC | None = Field(None, description="Optional within the EEA.")
    amount: Decimal = Field(
        ge=Decimal("0.01"), le=Decimal("999999999.99"), decimal_places=2, description="In euros."
    )
    text: Annotated[OneLine, StringConstraints(min_length=1, max_length=140)] | None = Field(
        None, description="Unstructured remittance information; either text or reference."
    )
    reference: CreditorReference | None = Field(
        None, description="Structured remittance information (ISO 11649, RF…); either text or reference."
    )
    purpose: Annotated[str, StringConstraints(pattern=r"^[A-Z]{4}$")] | None = Field(
        None, description="An ISO 20022 purpose code, e.g. CHAR, GDDS."
    )

    @model_validator(mode="after")
    def _text_or_reference(self) -> EPCData:
        if (self.text is None) == (self.reference is None):
            raise ValueError("give either text or reference, not both and not neither")
        return self

    def content(self) -> str:
        amount = f"EUR{self.amount:.2f}".rstrip("0").rstrip(".")
        lines = ["BCD", "002", "", "SCT", self.bic or "", self.name, self.iban, amount, self.purpose or "",
                 self.reference or ""]
        if self.text:
            lines.append(self.text)
        # The character set line names the encoding of the bytes in the symbol: the same choice as the
        # encoding plan's (ISO 8859-1 when it can hold the text, else UTF-8), so the two never disagree.
        # (segno would pick ISO 8859-2…-15 before UTF-8; the guidelines allow UTF-8 for any text.)
        lines[2] = "2" if plan_encoding("\n".join(lines)).encoding == "iso-8859-1" else "1"
        return "\n".join(lines)


KIND_DATA: dict[str, type[_KindData]] = {
    "url": URLData,
    "text": TextData,
    "wifi": WifiData,
    "vcard": VCardData,
    "email": EmailData,
    "sms": SMSData,
    "phone": PhoneData,
    "geo": GeoData,
    "event": EventData,
    "mecard": MeCardData,
    "epc": EPCData,
}
