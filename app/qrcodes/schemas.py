"""The HTTP shapes of the qrcodes context: what clients send and what they get back."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from app.links.targets import TargetURL
from app.qrcodes.content import (
    EmailData,
    GeoData,
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


def _reject_nul(value: Any, loc: tuple[str | int, ...] = ()) -> None:
    """U+0000 in any string of a request is refused, on every backend alike: PostgreSQL's text and JSON
    types cannot hold it (the INSERT would fail), and no scanner shows it. Raised as a ValidationError at
    the string's own location, so the 422 names the field (`data.text`), not the whole body."""
    if isinstance(value, str):
        if "\x00" in value:
            error = PydanticCustomError("string_nul", "NUL characters (U+0000) are not allowed")
            raise ValidationError.from_exception_data("request", [InitErrorDetails(type=error, loc=loc, input=value)])
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


class CreateURLCode(_CreateCode):
    kind: Literal["url"]
    data: URLData
    dynamic: bool = Field(
        True, description="Encode the short link {PUBLIC_BASE_URL}/r/{slug}; its target can change later."
    )
    slug: Slug | None = Field(None, description="The short link's slug; generated when absent.")

    @model_validator(mode="after")
    def _slug_needs_dynamic(self) -> CreateURLCode:
        if self.slug is not None and not self.dynamic:
            raise ValueError("slug applies only to dynamic codes (dynamic: true)")
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


CreateCode = Annotated[
    Union[
        CreateURLCode,
        CreateTextCode,
        CreateWifiCode,
        CreateVCardCode,
        CreateEmailCode,
        CreateSMSCode,
        CreatePhoneCode,
        CreateGeoCode,
    ],
    Field(discriminator="kind"),
]

CREATE_EXAMPLES = {
    "dynamic url": {
        "summary": "A dynamic link (the default for url): the code encodes a short link",
        "value": {"kind": "url", "data": {"url": "https://example.com/spring-sale"}, "title": "Spring poster", "tags": ["print"]},
    },
    "wifi": {
        "summary": "Join a Wi-Fi network",
        "value": {"kind": "wifi", "data": {"ssid": "Cafe Guest", "password": "espresso42", "security": "WPA"}},
    },
    "vcard": {
        "summary": "A contact card (vCard 3.0)",
        "value": {"kind": "vcard", "data": {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0000"}},
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
}


class UpdateCode(_NoNul):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    tags: list[Tag] | None = Field(None, max_length=20)
    target_url: TargetURL | None = Field(
        None, description="Dynamic codes only: where the short link now leads. The image does not change."
    )


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
