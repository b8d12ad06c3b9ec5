"""The HTTP shapes of the qrcodes context: what clients send and what they get back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from app.links.targets import TargetURL
from app.qrcodes.content import (
    EmailData,
    EPCData,
    EventData,
    GeoData,
    MeCardData,
    PhoneData,
    SMSData,
    TextData,
    URLData,
    VCardData,
    WifiData,
)
from app.qrcodes.style import Style

SLUG_PATTERN = r"^[A-Za-z0-9_-]{3,64}$"
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
ImageFormat = Literal["png", "svg", "pdf", "eps"]
IMAGE_FORMATS: tuple[str, ...] = ImageFormat.__args__  # type: ignore[attr-defined]


def _utc_and_not_past(value: datetime) -> datetime:
    """An expiry already over is a mistake (a wrong year, a lost time zone), not a way to switch a link
    off: that is what `disabled` is for. Normalised to UTC here, where a time that UTC cannot hold
    (9999-12-31T23:00-14:00) is still a clear 422 rather than an error when it is stored."""
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("expires_at is out of range") from None
    if value <= datetime.now(UTC):
        raise ValueError("expires_at is in the past")
    return value


ExpiresAt = Annotated[AwareDatetime, AfterValidator(_utc_and_not_past)]
# The column is a 32-bit INTEGER on PostgreSQL: a larger number would fail at the INSERT, not here.
MaxScans = Annotated[int, Field(ge=1, le=2**31 - 1)]

# A dynamic code's short link: how it redirects, and when it stops. Static codes have no link, so they
# refuse these (and `slug`, `target_url`) on create and update.
LINK_SETTINGS = ("forward_query", "expires_at", "max_scans", "disabled")
_FORWARD_QUERY = (
    "Dynamic codes only: append the query string of the scanned short link (UTM parameters, say) to the target."
)
_EXPIRES_AT = "Dynamic codes only: when the short link stops redirecting; with a time zone, not in the past."
_MAX_SCANS = "Dynamic codes only: the short link redirects this many scans at most, then stops."
_DISABLED = "Dynamic codes only: the short link does not redirect while this is true."


def _field_errors(errors: list[tuple[tuple[str | int, ...], str, str, Any]]) -> ValidationError:
    """A ValidationError at each (location, type, message, input). Raised from a model validator, it keeps
    those locations, so the 422 names each field (`data.text`, `max_scans`) instead of the whole body."""
    details = [
        InitErrorDetails(type=PydanticCustomError(type_, message), loc=loc, input=input_)
        for loc, type_, message, input_ in errors
    ]
    return ValidationError.from_exception_data("request", details)


def _reject_nul(value: Any, loc: tuple[str | int, ...] = ()) -> None:
    """U+0000 in any string of a request is refused, on every backend alike: PostgreSQL's text and JSON
    types cannot hold it (the INSERT would fail), and no scanner shows it."""
    if isinstance(value, str):
        if "\x00" in value:
            raise _field_errors([(loc, "string_nul", "NUL characters (U+0000) are not allowed", value)])
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_nul(item, (*loc, index))


class _NoNul(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        _reject_nul(data)
        return data


class _CreateCode(_NoNul):
    model_config = ConfigDict(extra="forbid")

    style: Style = Field(default_factory=Style)
    title: Title | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _unique_tags(self) -> _CreateCode:
        self.tags = list(dict.fromkeys(self.tags))
        return self

    @model_validator(mode="after")
    def _style_fits_the_kind(self) -> _CreateCode:
        """A kind whose standard fixes the error level (EPC: M) refuses any other, a logo (which needs H)
        and a Micro QR code, each at its own field."""
        rules = self.data.symbol  # type: ignore[attr-defined]  # every subclass has data
        if rules.error is None:
            return self
        kind, style, errors = self.kind, self.style, []  # type: ignore[attr-defined]
        if style.logo is not None:
            message = f"{kind} codes use error level {rules.error} by their standard; a logo needs level H"
            errors.append((("style", "logo"), "value_error", message, str(style.logo)))
        elif style.error != rules.error:
            message = f"{kind} codes use error level {rules.error}, as their standard requires"
            errors.append((("style", "error"), "value_error", message, style.error))
        if style.micro:
            errors.append((("style", "micro"), "value_error", f"{kind} codes cannot be Micro QR codes", True))
        if errors:
            raise _field_errors(errors)
        return self


class CreateURLCode(_CreateCode):
    kind: Literal["url"]
    data: URLData
    dynamic: bool = Field(
        True, description="Encode the short link {PUBLIC_BASE_URL}/r/{slug}; its target can change later."
    )
    slug: Slug | None = Field(None, description="The short link's slug; generated when absent.")
    forward_query: bool = Field(False, description=_FORWARD_QUERY)
    expires_at: ExpiresAt | None = Field(None, description=_EXPIRES_AT + " Absent: never.")
    max_scans: MaxScans | None = Field(None, description=_MAX_SCANS + " Absent: no limit.")
    disabled: bool = Field(False, description=_DISABLED)

    @model_validator(mode="after")
    def _slug_needs_dynamic(self) -> CreateURLCode:
        if self.slug is not None and not self.dynamic:
            raise ValueError("slug applies only to dynamic codes (dynamic: true)")
        return self

    @model_validator(mode="after")
    def _link_settings_need_dynamic(self) -> CreateURLCode:
        """A setting left at its default is no request for a link; one that differs is refused at its own
        location, so the 422 names each offending field."""
        if self.dynamic:
            return self
        defaults = type(self).model_fields
        given = [name for name in LINK_SETTINGS if getattr(self, name) != defaults[name].default]
        if given:
            message = "{} applies only to dynamic codes (dynamic: true)"
            raise _field_errors([((name,), "value_error", message.format(name), getattr(self, name)) for name in given])
        return self


class CreateTextCode(_CreateCode):
    kind: Literal["text"]
    data: TextData


class CreateWifiCode(_CreateCode):
    kind: Literal["wifi"]
    data: WifiData


class CreateVCardCode(_CreateCode):
    kind: Literal["vcard"]
    data: VCardData


class CreateEmailCode(_CreateCode):
    kind: Literal["email"]
    data: EmailData


class CreateSMSCode(_CreateCode):
    kind: Literal["sms"]
    data: SMSData


class CreatePhoneCode(_CreateCode):
    kind: Literal["phone"]
    data: PhoneData


class CreateGeoCode(_CreateCode):
    kind: Literal["geo"]
    data: GeoData


class CreateEventCode(_CreateCode):
    kind: Literal["event"]
    data: EventData


class CreateMeCardCode(_CreateCode):
    kind: Literal["mecard"]
    data: MeCardData


class CreateEPCCode(_CreateCode):
    kind: Literal["epc"]
    data: EPCData


CreateCode = Annotated[
    (
        CreateURLCode
        | CreateTextCode
        | CreateWifiCode
        | CreateVCardCode
        | CreateEmailCode
        | CreateSMSCode
        | CreatePhoneCode
        | CreateGeoCode
        | CreateEventCode
        | CreateMeCardCode
        | CreateEPCCode
    ),
    Field(discriminator="kind"),
]

CREATE_EXAMPLES = {
    "dynamic url": {
        "summary": "A dynamic link (the default for url): the code encodes a short link",
        "value": {
            "kind": "url",
            "data": {"url": "https://example.com/spring-sale"},
            "title": "Spring poster",
            "tags": ["print"],
        },
    },
    "wifi": {
        "summary": "Join a Wi-Fi network",
        "value": {"kind": "wifi", "data": {"ssid": "Cafe Guest", "password": "espresso42", "security": "WPA"}},
    },
    "vcard": {
        "summary": "A contact card (vCard 3.0)",
        "value": {
            "kind": "vcard",
            "data": {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0000"},
        },
    },
    "limited campaign": {
        "summary": "A dynamic link that stops after a date or 500 scans, passing UTM parameters on",
        "value": {
            "kind": "url",
            "data": {"url": "https://example.com/launch"},
            "forward_query": True,
            # Next year's end: a fixed date would one day be refused as being in the past.
            "expires_at": f"{datetime.now(UTC).year + 1}-12-31T23:59:59Z",
            "max_scans": 500,
        },
    },
    "styled": {
        "summary": "Static URL, high error correction, custom colours",
        "value": {
            "kind": "url",
            "dynamic": False,
            "data": {"url": "https://example.com"},
            "style": {"error": "H", "scale": 8, "border": 2, "dark": "#1a237e", "light": "transparent"},
        },
    },
    "module colours": {
        "summary": "Red finder patterns, navy data modules, a cream quiet zone",
        "value": {
            "kind": "text",
            "data": {"text": "Hello from qrflow"},
            "style": {"finder_dark": "#c62828", "data_dark": "#1a237e", "quiet_zone": "#fff8e1"},
        },
    },
    "logo": {
        "summary": "A logo in the centre: upload it first (POST /v1/logos) and give its id; level H is forced",
        "value": {
            "kind": "url",
            "data": {"url": "https://example.com/menu"},
            "style": {"logo": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "logo_size": 0.25, "light": "transparent"},
        },
    },
    "event": {
        "summary": "A calendar event (iCalendar VEVENT)",
        "value": {
            "kind": "event",
            "data": {
                "summary": "Spring launch",
                "start": "2030-04-02T18:00:00+02:00",
                "end": "2030-04-02T21:00:00+02:00",
                "location": "Hall 3, Main Street 1",
            },
        },
    },
    "epc": {
        "summary": "A SEPA credit transfer (EPC payment code, level M)",
        "value": {
            "kind": "epc",
            "data": {
                "name": "Wikimedia Foerdergesellschaft",
                "iban": "DE33 1002 0500 0001 1947 00",
                "amount": "20.00",
                "text": "Spende fuer Wikipedia",
            },
        },
    },
    "mecard": {
        "summary": "A contact card (MECARD)",
        "value": {
            "kind": "mecard",
            "data": {"name": "Lovelace,Ada", "phones": ["+44 20 7946 0000"], "email": "ada@example.com"},
        },
    },
}


class UpdateCode(_NoNul):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    tags: list[Tag] | None = Field(None, max_length=20)
    target_url: TargetURL | None = Field(
        None, description="Dynamic codes only: where the short link now leads. The image does not change."
    )
    forward_query: bool | None = Field(None, description=_FORWARD_QUERY)
    expires_at: ExpiresAt | None = Field(None, description=_EXPIRES_AT + " null: never.")
    max_scans: MaxScans | None = Field(None, description=_MAX_SCANS + " null: no limit.")
    disabled: bool | None = Field(None, description=_DISABLED)


class CodeOut(BaseModel):
    id: uuid.UUID
    kind: str
    status: Literal["pending", "ready", "failed"]
    error: str | None = None
    content: str = Field(description="The exact string encoded in the symbol.")
    data: dict[str, Any]
    dynamic: bool
    slug: str | None = None
    short_url: str | None = None
    target_url: str | None = None
    # The short link's settings; all null for a static code, which has none.
    forward_query: bool | None = Field(
        None, description="Whether the short link appends the query string it was scanned with to the target."
    )
    expires_at: datetime | None = Field(None, description="When the short link stops redirecting; null: never.")
    max_scans: int | None = Field(None, description="How many scans the short link redirects at most; null: no limit.")
    disabled: bool | None = Field(None, description="Whether the short link is switched off.")
    scans_total: int | None = Field(
        None,
        description="Scans by people (not bots) stored so far; they are recorded a moment after the redirect. "
        "null for static codes: their scans never reach this server.",
    )
    style: Style
    title: str | None = None
    tags: list[str]
    images: dict[str, str] = Field(description="Format → URL of the image (409 until status is ready).")
    created_at: datetime
    updated_at: datetime
    rendered_at: datetime | None = None


class CodePage(BaseModel):
    items: list[CodeOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null at the end.")
