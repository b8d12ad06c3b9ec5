"""The exact strings each kind encodes, what each kind refuses, and the CreateCode request shape."""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import segno.helpers
from pydantic import TypeAdapter, ValidationError

from app.links.targets import MAX_URL_LENGTH
from app.qrcodes.content import (
    KIND_DATA,
    KINDS,
    EmailData,
    GeoData,
    PhoneData,
    SMSData,
    TextData,
    URLData,
    VCardData,
    WifiData,
)
from app.qrcodes.schemas import (
    CreateCode,
    CreateEmailCode,
    CreateEPCCode,
    CreateEventCode,
    CreateGeoCode,
    CreateMeCardCode,
    CreatePhoneCode,
    CreateSMSCode,
    CreateTextCode,
    CreateURLCode,
    CreateVCardCode,
    CreateWifiCode,
)
from app.qrcodes.style import Style

CREATE_CODE = TypeAdapter(CreateCode)


def _wifi_fields(content: str) -> dict[str, str]:
    """Reads WIFI:…;; the way ZXing's Wi-Fi parser does: fields end at an unescaped ';', '\\' escapes."""
    assert content.startswith("WIFI:") and content.endswith(";")
    fields: dict[str, str] = {}
    field: list[str] = []
    escaped = False
    for ch in content.removeprefix("WIFI:"):
        if escaped:
            field.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ";":
            if field:
                key, _, value = "".join(field).partition(":")
                fields[key] = value
            field = []
        else:
            field.append(ch)
    assert not field and not escaped, f"unterminated field in {content!r}"
    return fields


def _vcard_lines(content: str) -> list[str]:
    lines = content.split("\r\n")
    assert lines[:2] == ["BEGIN:VCARD", "VERSION:3.0"]
    assert lines[-1] == "END:VCARD"
    return lines


def _mailto_parts(content: str) -> tuple[str, list[tuple[str, str]]]:
    """The recipient and the header fields a mail client reads from a mailto: URI (RFC 6068)."""
    parts = urlsplit(content)
    assert parts.scheme == "mailto"
    assert parts.fragment == ""
    return unquote(parts.path), parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))


def _error_types(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {error["type"] for error in exc.value.errors()}


def _error_locs(exc: pytest.ExceptionInfo[ValidationError]) -> set[tuple[int | str, ...]]:
    return {error["loc"] for error in exc.value.errors()}


# --- url and text ------------------------------------------------------------------------------------------


def test_kind_data_covers_every_kind() -> None:
    assert set(KIND_DATA) == set(KINDS)


def test_url_is_encoded_as_given_without_surrounding_whitespace() -> None:
    assert URLData(url="  https://example.com/a/b?c=d&e=f#g ").content() == "https://example.com/a/b?c=d&e=f#g"


def test_text_is_encoded_verbatim() -> None:
    text = "Grüße ✓ 日本\nline two; with: specials,\\"
    assert TextData(text=text).content() == text


@pytest.mark.parametrize("text", ["", "   ", "x" * 8001])
def test_text_must_be_non_blank_and_bounded(text: str) -> None:
    with pytest.raises(ValidationError):
        TextData(text=text)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "ftp://example.com/file.txt",
        "mailto:ada@example.com",
        "example.com/no-scheme",
        "https://user:pw@example.com/",
        "https://user@example.com/",
        "https:///only/a/path",
        "https://",
        "https://example.com:99999/",
        "https://exa mple.com/",
        "https://example.com/\x00",
    ],
)
def test_url_refuses_what_a_scanner_should_not_open(url: str) -> None:
    with pytest.raises(ValidationError):
        URLData(url=url)


def test_url_length_limit_is_exact() -> None:
    prefix = "https://example.com/"
    longest = prefix + "a" * (MAX_URL_LENGTH - len(prefix))
    assert URLData(url=longest).content() == longest
    with pytest.raises(ValidationError):
        URLData(url=longest + "a")


# --- wifi --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            WifiData(ssid="Cafe Guest", password="espresso42"),
            "WIFI:T:WPA;S:Cafe Guest;P:espresso42;;",
        ),
        (
            WifiData(ssid="Old Router", password="abcde", security="WEP", hidden=True),
            "WIFI:T:WEP;S:Old Router;P:abcde;H:true;;",
        ),
        (WifiData(ssid="Lobby", security="nopass"), "WIFI:T:nopass;S:Lobby;;"),
        (WifiData(ssid="Lobby", security="nopass", password=""), "WIFI:T:nopass;S:Lobby;;"),
        (
            WifiData(ssid='a\\b;c,d"e:f', password='p\\;,":w'),
            'WIFI:T:WPA;S:a\\\\b\\;c\\,d\\"e\\:f;P:p\\\\\\;\\,\\"\\:w;;',
        ),
    ],
)
def test_wifi_content(data: WifiData, expected: str) -> None:
    assert data.content() == expected


@pytest.mark.parametrize(
    ("ssid", "password", "security", "hidden"),
    [
        ("Cafe Guest", "espresso42", "WPA", False),
        ("Old Router", "abcde", "WEP", True),
        ("Lobby", None, "nopass", False),
        ('Café "Guest"; 2:4, \\ floor', 'pa;ss:wo"rd,\\x', "WPA", True),
    ],
)
def test_wifi_reads_like_segnos(ssid: str, password: str | None, security: str, hidden: bool) -> None:
    # segno ends hidden networks with one ';' fewer and leaves ',' unescaped: both read the same.
    ours = WifiData(ssid=ssid, password=password, security=security, hidden=hidden).content()
    theirs = segno.helpers.make_wifi_data(ssid, password, security, hidden)
    assert _wifi_fields(ours) == _wifi_fields(theirs)
    assert _wifi_fields(ours)["S"] == ssid


@pytest.mark.parametrize(
    "fields",
    [
        {"ssid": "Cafe", "security": "WPA"},
        {"ssid": "Cafe"},
        {"ssid": "Cafe", "security": "WPA", "password": ""},
        {"ssid": "Cafe", "security": "WEP"},
        {"ssid": "Cafe", "security": "nopass", "password": "secret"},
        {"ssid": "", "security": "nopass"},
        {"ssid": "x" * 33, "security": "nopass"},
        {"ssid": "Cafe", "password": "x" * 64},
        {"ssid": "Cafe", "security": "WPA3", "password": "secret"},
    ],
)
def test_wifi_refuses_inconsistent_settings(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        WifiData(**fields)


# --- vcard -------------------------------------------------------------------------------------------------


def test_vcard_content() -> None:
    card = VCardData(
        name="Ada King Lovelace",
        phone="+44 20 7946 0000",
        email="ada@example.com",
        org="Analytical Engines, Ltd.",
        title="Countess; Mathematician",
        url="https://example.com/ada",
        address="12 St James's Square\nLondon",
    )
    assert card.content() == "\r\n".join(
        [
            "BEGIN:VCARD",
            "VERSION:3.0",
            "N:Lovelace;Ada King;;;",
            "FN:Ada King Lovelace",
            "ORG:Analytical Engines\\, Ltd.",
            "TITLE:Countess\\; Mathematician",
            "TEL:+442079460000",
            "EMAIL:ada@example.com",
            "URL:https://example.com/ada",
            "ADR:;;12 St James's Square\\nLondon;;;;",
            "END:VCARD",
        ]
    )


def test_vcard_with_only_a_name() -> None:
    assert VCardData(name="  Plato ").content() == (
        "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Plato;;;;\r\nFN:Plato\r\nEND:VCARD"
    )


def test_vcard_escapes_text_values() -> None:
    card = VCardData(name="Smith\\Jones, Jr.; Esq.", org="Line one\r\nLine two\nthree")
    lines = _vcard_lines(card.content())
    assert "FN:Smith\\\\Jones\\, Jr.\\; Esq." in lines
    # The name splits at its last space; each half is escaped on its own.
    assert "N:Esq.;Smith\\\\Jones\\, Jr.\\;;;;" in lines
    assert "ORG:Line one\\nLine two\\nthree" in lines
    # Nothing escaped may leave a bare line break inside a property.
    assert all("\n" not in line and "\r" not in line for line in lines)


def test_vcard_reads_like_segnos() -> None:
    # segno orders the properties differently and does not escape backslashes or line breaks, so the
    # comparison is per property and the values avoid those two.
    ours = VCardData(
        name="Ada King Lovelace",
        phone="+44 20 7946 0000",
        email="ada@example.com",
        org="Analytical Engines, Ltd.",
        title="Countess; Mathematician",
        url="https://example.com/ada",
        address="12 St James's Square",
    ).content()
    theirs = segno.helpers.make_vcard_data(
        name="Lovelace;Ada King;;;",
        displayname="Ada King Lovelace",
        phone="+442079460000",
        email="ada@example.com",
        org="Analytical Engines, Ltd.",
        title="Countess; Mathematician",
        url="https://example.com/ada",
        street="12 St James's Square",
    )
    their_lines = theirs.split("\r\n")
    assert their_lines[-1] == ""  # segno ends with a line break; qrflow does not need one
    assert sorted(_vcard_lines(ours)) == sorted(their_lines[:-1])


@pytest.mark.parametrize(
    "fields",
    [
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"name": "Ada", "email": "not-an-email"},
        {"name": "Ada", "phone": "call me"},
        {"name": "Ada", "url": "javascript:alert(1)"},
        {"name": "Ada", "org": "x" * 501},
        {"name": "Ada", "nickname": "extra fields are refused"},
    ],
)
def test_vcard_refuses_invalid_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        VCardData(**fields)


# --- email -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (EmailData(to="ada@example.com"), "mailto:ada@example.com"),
        (EmailData(to="ada@example.com", subject="Hi"), "mailto:ada@example.com?subject=Hi"),
        (EmailData(to="ada@example.com", body="Hi"), "mailto:ada@example.com?body=Hi"),
        (EmailData(to="ada@example.com", subject="", body=""), "mailto:ada@example.com"),
        (
            EmailData(to="ada@example.com", subject="Hello & welcome?", body="Line 1\nLine 2: 100% — ok"),
            "mailto:ada@example.com?subject=Hello%20%26%20welcome%3F"
            "&body=Line%201%0ALine%202%3A%20100%25%20%E2%80%94%20ok",
        ),
        (EmailData(to="ada+qr@example.com", subject="a/b+c=d"), "mailto:ada+qr@example.com?subject=a%2Fb%2Bc%3Dd"),
    ],
)
def test_email_content(data: EmailData, expected: str) -> None:
    assert data.content() == expected


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Hello & welcome?", "Line 1\nLine 2: 100% — ok"),
        ("a=b&c=d#e", None),
        ("Grüße ✓ 日本 / +1", "a/b"),
    ],
)
def test_email_reads_like_segnos(subject: str, body: str | None) -> None:
    # segno keeps '/' unencoded; both decode to the same recipient and fields. A subject is always given:
    # without one segno 1.6 starts the query with '&' instead of '?'.
    ours = EmailData(to="ada@example.com", subject=subject, body=body).content()
    theirs = segno.helpers.make_make_email_data("ada@example.com", subject=subject, body=body)
    assert _mailto_parts(ours) == _mailto_parts(theirs)
    expected_fields = [(name, value) for name, value in (("subject", subject), ("body", body)) if value]
    assert _mailto_parts(ours) == ("ada@example.com", expected_fields)


@pytest.mark.parametrize("address", ["what?now@example.com", "a#b@example.com", "100%25@example.com"])
def test_email_address_survives_mailto_parsing(address: str) -> None:
    assert _mailto_parts(EmailData(to=address).content()) == (address, [])


@pytest.mark.parametrize(
    "fields",
    [
        {"to": "not-an-email"},
        {"to": "ada@"},
        {"to": "@example.com"},
        {"to": "ada lovelace@example.com"},
        {"to": "ada@example.com", "subject": "x" * 501},
        {"to": "ada@example.com", "body": "x" * 2001},
        {"to": "ada@example.com", "cc": "bob@example.com"},
    ],
)
def test_email_refuses_invalid_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EmailData(**fields)


# --- sms and phone -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            SMSData(number="+1 (555) 010-9999", text="See you at 7: bring snacks"),
            "SMSTO:+15550109999:See you at 7: bring snacks",
        ),
        (SMSData(number="030 1234-5678"), "SMSTO:03012345678:"),
        (SMSData(number=" +44.20.7946.0000 ", text=""), "SMSTO:+442079460000:"),
        (SMSData(number="555/0100", text="Grüße ✓"), "SMSTO:5550100:Grüße ✓"),
    ],
)
def test_sms_content(data: SMSData, expected: str) -> None:
    assert data.content() == expected


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+1 (555) 010-9999", "tel:+15550109999"),
        ("030 1234-5678", "tel:03012345678"),
        ("555.010.9999", "tel:5550109999"),
        ("  +44 20 7946 0000  ", "tel:+442079460000"),
        ("12", "tel:12"),
    ],
)
def test_phone_content(number: str, expected: str) -> None:
    assert PhoneData(number=number).content() == expected


@pytest.mark.parametrize(
    "number",
    ["", "1", "+", "call me", "++15550100", "555-0100 ext. 3", "(555) 010-9999", "+1" + "0" * 31, "5550100;x"],
)
@pytest.mark.parametrize("model", [PhoneData, SMSData])
def test_phone_numbers_are_refused(model: type[PhoneData] | type[SMSData], number: str) -> None:
    with pytest.raises(ValidationError):
        model(number=number)


# --- geo ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lat", "lng", "expected"),
    [
        (52.5163, 13.3777, "geo:52.5163,13.3777"),
        (-33.8688, 151.2093, "geo:-33.8688,151.2093"),
        (0, 0, "geo:0.0,0.0"),
        (90, -180, "geo:90.0,-180.0"),
        (-90, 180, "geo:-90.0,180.0"),
        (48.858370123, 2.294481, "geo:48.858370123,2.294481"),
    ],
)
def test_geo_content(lat: float, lng: float, expected: str) -> None:
    assert GeoData(lat=lat, lng=lng).content() == expected


_GEO_URI = re.compile(r"geo:(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)")  # RFC 5870: plain decimals, no exponent


@pytest.mark.parametrize(
    ("lat", "lng"),
    [
        (52.5163, 13.3777),
        (-33.8688, 151.2093),
        (0, 0),
        (90, -180),
        (0.00001, -0.00005),  # repr() would write 1e-05
    ],
)
def test_geo_is_an_rfc5870_uri_like_segnos(lat: float, lng: float) -> None:
    ours = _GEO_URI.fullmatch(GeoData(lat=lat, lng=lng).content())
    theirs = _GEO_URI.fullmatch(segno.helpers.make_geo_data(lat, lng))
    assert ours is not None and theirs is not None
    assert [float(value) for value in ours.groups()] == [float(value) for value in theirs.groups()] == [lat, lng]


@pytest.mark.parametrize(
    ("lat", "lng"),
    [(90.0001, 0), (-91, 0), (0, 180.5), (0, -181), (math.nan, 0), (0, math.inf), ("north", 0)],
)
def test_geo_refuses_coordinates_off_the_globe(lat: Any, lng: Any) -> None:
    with pytest.raises(ValidationError):
        GeoData(lat=lat, lng=lng)


# --- CreateCode --------------------------------------------------------------------------------------------

_VALID_DATA: dict[str, tuple[type, dict[str, Any]]] = {
    "url": (CreateURLCode, {"url": "https://example.com/spring-sale"}),
    "text": (CreateTextCode, {"text": "Hello"}),
    "wifi": (CreateWifiCode, {"ssid": "Cafe Guest", "password": "espresso42"}),
    "vcard": (CreateVCardCode, {"name": "Ada Lovelace", "email": "ada@example.com"}),
    "email": (CreateEmailCode, {"to": "ada@example.com", "subject": "Hi"}),
    "sms": (CreateSMSCode, {"number": "+15550100", "text": "Hi"}),
    "phone": (CreatePhoneCode, {"number": "+15550100"}),
    "geo": (CreateGeoCode, {"lat": 52.52, "lng": 13.405}),
    "event": (CreateEventCode, {"summary": "Launch", "start": "2030-04-02T18:00:00Z", "end": "2030-04-02T19:00:00Z"}),
    "mecard": (CreateMeCardCode, {"name": "Lovelace,Ada"}),
    "epc": (CreateEPCCode, {"name": "Red Cross", "iban": "BE72000000001616", "amount": 20, "text": "Gift"}),
}


def test_every_kind_has_a_create_request() -> None:
    assert set(_VALID_DATA) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_create_code_dispatches_on_kind(kind: str) -> None:
    model, data = _VALID_DATA[kind]
    request = CREATE_CODE.validate_python({"kind": kind, "data": data})
    assert type(request) is model
    assert type(request.data) is KIND_DATA[kind]
    assert request.style == Style()


@pytest.mark.parametrize(
    "body", [{"kind": "bitcoin", "data": {}}, {"kind": "URL", "data": {"url": "https://example.com"}}]
)
def test_create_code_refuses_unknown_kind(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as exc:
        CREATE_CODE.validate_python(body)
    assert _error_types(exc) == {"union_tag_invalid"}


def test_create_code_requires_kind() -> None:
    with pytest.raises(ValidationError) as exc:
        CREATE_CODE.validate_python({"data": {"text": "Hello"}})
    assert _error_types(exc) == {"union_tag_not_found"}


def test_create_code_refuses_another_kinds_data() -> None:
    with pytest.raises(ValidationError) as exc:
        CREATE_CODE.validate_python({"kind": "text", "data": {"url": "https://example.com"}})
    assert ("text", "data", "url") in _error_locs(exc)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"kind": "text", "data": {"text": "Hello"}, "colour": "red"}, ("text", "colour")),
        ({"kind": "text", "data": {"text": "Hello", "lang": "en"}}, ("text", "data", "lang")),
        ({"kind": "text", "data": {"text": "Hello"}, "style": {"shape": "round"}}, ("text", "style", "shape")),
        ({"kind": "text", "data": {"text": "Hello"}, "slug": "my-slug"}, ("text", "slug")),
        ({"kind": "wifi", "data": {"ssid": "Cafe", "security": "nopass"}, "dynamic": True}, ("wifi", "dynamic")),
    ],
)
def test_create_code_refuses_extra_fields(body: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as exc:
        CREATE_CODE.validate_python(body)
    assert _error_types(exc) == {"extra_forbidden"}
    assert _error_locs(exc) == {loc}


def test_slug_needs_a_dynamic_code() -> None:
    url = {"url": "https://example.com"}
    dynamic = CREATE_CODE.validate_python({"kind": "url", "data": url, "slug": "spring-sale"})
    assert dynamic.dynamic is True and dynamic.slug == "spring-sale"
    with pytest.raises(ValidationError):
        CREATE_CODE.validate_python({"kind": "url", "data": url, "dynamic": False, "slug": "spring-sale"})


@pytest.mark.parametrize("slug", ["abc", "My_Slug-42", "x" * 64])
def test_slug_pattern_accepts(slug: str) -> None:
    request = CREATE_CODE.validate_python({"kind": "url", "data": {"url": "https://example.com"}, "slug": slug})
    assert request.slug == slug


@pytest.mark.parametrize("slug", ["ab", "x" * 65, "has space", "a/b/c", "dot.slug", "grüße", "", "abc\n"])
def test_slug_pattern_refuses(slug: str) -> None:
    with pytest.raises(ValidationError) as exc:
        CREATE_CODE.validate_python({"kind": "url", "data": {"url": "https://example.com"}, "slug": slug})
    assert _error_locs(exc) == {("url", "slug")}


def _with_style(style: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "text", "data": {"text": "Hello"}, "style": style}


@pytest.mark.parametrize(
    "style",
    [
        {"dark": "#12345"},
        {"dark": "#1234567"},
        {"dark": "red"},
        {"dark": "000000"},
        {"dark": "#gggggg"},
        {"light": "none"},
        {"light": "#fff"},
        {"dark": "#000000", "light": "#000000"},
        {"dark": "#FFFFFF"},  # the default light is #ffffff: colours compare case-insensitively
        {"dark": "#00000080", "light": "#000000ff"},  # the alpha channel does not make colours differ
        {"error": "X"},
        {"error": "low"},
        {"scale": 0},
        {"scale": 51},
        {"border": -1},
        {"border": 17},
        {"micro": True, "error": "H"},
        {"micro": True, "error": "h"},
    ],
)
def test_style_refuses(style: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as exc:
        CREATE_CODE.validate_python(_with_style(style))
    assert all(loc[:2] == ("text", "style") for loc in _error_locs(exc))


def test_style_normalises_case() -> None:
    request = CREATE_CODE.validate_python(_with_style({"error": "h", "dark": "#1A237E", "light": "#FFFFFF80"}))
    assert request.style == Style(error="H", dark="#1a237e", light="#ffffff80")
    assert request.style.error == "H"
    assert request.style.dark == "#1a237e"


def test_style_accepts_a_transparent_background() -> None:
    assert Style(light="transparent", dark="#1a237e").light == "transparent"


def test_style_defaults() -> None:
    # What a code stores: the optional fields (module colours, logo) are left out while null.
    assert Style().model_dump(exclude_none=True) == {
        "error": "M",
        "scale": 10,
        "border": 4,
        "dark": "#000000",
        "light": "#ffffff",
        "micro": False,
    }


@pytest.mark.parametrize(
    ("micro", "border", "expected"), [(False, None, 4), (True, None, 2), (True, 0, 0), (False, 1, 1)]
)
def test_style_border_defaults_to_the_standard_quiet_zone(micro: bool, border: int | None, expected: int) -> None:
    assert Style(micro=micro, border=border).border == expected


def test_create_code_deduplicates_tags_in_order() -> None:
    request = CREATE_CODE.validate_python({"kind": "text", "data": {"text": "Hello"}, "tags": [" b ", "a", "b"]})
    assert request.tags == ["b", "a"]
