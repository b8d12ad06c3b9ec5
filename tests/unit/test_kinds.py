"""The kinds added for richer codes: event (iCalendar VEVENT), mecard and epc (SEPA payment).

Each: the exact content string, what it refuses (at the field's own location), that a decoder reads the
rendered symbol back to exactly that string, and, where segno has a helper for the format, that both agree.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
import segno
import segno.helpers
from pydantic import TypeAdapter, ValidationError

from app.qrcodes.content import EPCData, EventData, MeCardData
from app.qrcodes.rendering import make_symbol, render_images
from app.qrcodes.schemas import CreateCode
from app.qrcodes.style import Style
from app.qrcodes.symbol import PayloadTooLong, check_fits, plan_encoding
from tests.decoding import decode_png, decode_svg

CREATE_CODE = TypeAdapter(CreateCode)
EPC = EPCData.symbol


def _locs(exc: pytest.ExceptionInfo[ValidationError]) -> set[tuple[int | str, ...]]:
    return {error["loc"] for error in exc.value.errors()}


def _reads_back(content: str, rules: Any = None) -> None:
    images = render_images(content, Style(), *([rules] if rules else []))
    assert decode_png(images["png"]) == [content]
    assert decode_svg(images["svg"]) == [content]


# --- event -------------------------------------------------------------------------------------------------


def test_event_content_is_a_vevent_in_utc() -> None:
    event = EventData(
        summary="Spring launch, with drinks; bring a friend",
        start="2030-04-02T18:00:00+02:00",
        end="2030-04-02T21:30:15.75+02:00",
        location="Hall 3\nMain Street 1",
        description="Back\\slash",
    )
    assert event.content() == "\r\n".join(
        [
            "BEGIN:VEVENT",
            "SUMMARY:Spring launch\\, with drinks\\; bring a friend",
            "DTSTART:20300402T160000Z",
            "DTEND:20300402T193015Z",  # to the second
            "LOCATION:Hall 3\\nMain Street 1",
            "DESCRIPTION:Back\\\\slash",
            "END:VEVENT",
        ]
    )


def test_event_with_only_the_required_fields() -> None:
    event = EventData(summary="x", start="0999-01-01T00:00:00Z", end="0999-01-01T00:00:01Z")
    assert event.content() == (
        "BEGIN:VEVENT\r\nSUMMARY:x\r\nDTSTART:09990101T000000Z\r\nDTEND:09990101T000001Z\r\nEND:VEVENT"
    )


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"end": "2030-04-02T18:00:00Z"}, ("end",)),  # equal to start
        ({"end": "2030-04-02T17:00:00Z"}, ("end",)),
        ({"end": "2030-04-02T18:00:00.5Z"}, ("end",)),  # equal once cut to the second
        ({"start": "2030-04-02T18:00:00"}, ("start",)),  # no time zone
        ({"start": "0001-01-01T00:00:00+01:00"}, ("start",)),  # before what UTC can hold
        ({"summary": "  "}, ("summary",)),
        ({"summary": "x" * 256}, ("summary",)),
        ({"location": "x" * 501}, ("location",)),
        ({"url": "https://example.com"}, ("url",)),
    ],
)
def test_event_refuses(fields: dict[str, Any], loc: tuple[str, ...]) -> None:
    base = {"summary": "Launch", "start": "2030-04-02T18:00:00Z", "end": "2030-04-02T19:00:00Z"}
    with pytest.raises(ValidationError) as exc:
        EventData(**(base | fields))
    assert _locs(exc) == {loc}


def test_event_reads_back() -> None:
    _reads_back(EventData(summary="Grüße, 日本; ok", start="2030-04-02T18:00:00Z", end="2030-04-03T18:00:00Z",
                          location="Köln").content())


# --- mecard ------------------------------------------------------------------------------------------------


def test_mecard_content() -> None:
    card = MeCardData(
        name="Lovelace,Ada",
        reading="ラブレス",
        phones=["+44 20 7946 0000", "030 1234-5678"],
        email="ada@example.com",
        url="https://example.com/ada",
        address="12 St James's Square, London",
        birthday="1815-12-10",
        memo='Notes: a;b\\c "q"',
        nickname="Ada",
    )
    assert card.content() == (
        "MECARD:N:Lovelace,Ada;SOUND:ラブレス;TEL:+442079460000;TEL:03012345678;EMAIL:ada@example.com;"
        "NICKNAME:Ada;BDAY:18151210;URL:https\\://example.com/ada;ADR:12 St James's Square\\, London;"
        'MEMO:Notes\\: a\\;b\\\\c \\"q\\";;'
    )


def test_mecard_name_keeps_its_comma_and_escapes_the_rest() -> None:
    # In N the comma separates last and first name (DoCoMo, and segno): it is not escaped; ; : \\ " are.
    assert MeCardData(name='Do;e,Jo:hn\\"').content() == 'MECARD:N:Do\\;e,Jo\\:hn\\\\\\";;'


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "Lovelace,Ada"},
        {"name": "Ada", "reading": "ada", "phones": ["+442079460000"], "email": "ada@example.com"},
        {"name": "Ada", "nickname": "Countess", "birthday": date(1815, 12, 10), "url": "https://example.com/a"},
        {"name": "Ada", "memo": 'Line: one; "two" \\ three'},
    ],
)
def test_mecard_is_segnos(fields: dict[str, Any]) -> None:
    # segno escapes the same characters but the comma, and has no free-form address: both are left out.
    theirs = segno.helpers.make_mecard_data(**{("phone" if k == "phones" else k): v for k, v in fields.items()})
    assert MeCardData(**fields).content() == theirs


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"name": ""}, ("name",)),
        ({"phones": ["call me"]}, ("phones", 0)),
        ({"phones": ["+15550100"] * 6}, ("phones",)),
        ({"email": "not-an-email"}, ("email",)),
        ({"url": "javascript:alert(1)"}, ("url",)),
        ({"birthday": "10.12.1815"}, ("birthday",)),
        ({"org": "Engines"}, ("org",)),
    ],
)
def test_mecard_refuses(fields: dict[str, Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as exc:
        MeCardData(**({"name": "Ada"} | fields))
    assert _locs(exc) == {loc}


def test_mecard_reads_back() -> None:
    _reads_back(MeCardData(name="Ångström,Zoë", phones=["+46 8 123 456 78"], memo="a,b;c:d").content())


# --- epc ---------------------------------------------------------------------------------------------------

_WIKIMEDIA = {"name": "Wikimedia Foerdergesellschaft", "iban": "DE33 1002 0500 0001 1947 00", "amount": 20}


def _segno_fields(data: EPCData) -> dict[str, Any]:
    return data.model_dump(exclude_none=True)


def test_epc_content_is_segnos() -> None:
    data = EPCData(**_WIKIMEDIA, text="Spende fuer Wikipedia")
    assert data.content() == (
        "BCD\n002\n2\nSCT\n\nWikimedia Foerdergesellschaft\nDE33100205000001194700\nEUR20\n\n\n"
        "Spende fuer Wikipedia"
    )
    assert data.content().encode("iso-8859-1") == segno.helpers._make_epc_qr_data(**_segno_fields(data))


@pytest.mark.parametrize(
    "fields",
    [
        {"text": "Spende fuer Wikipedia"},
        {"text": "Café crème", "bic": "BFSWDE33MUC", "amount": "1234.5", "purpose": "CHAR"},
        {"reference": "RF18 5390 0754 7034", "amount": "0.01"},
        {"reference": "RF18539007547034", "amount": "999999999.99", "bic": "GENODEF1JEV"},
    ],
)
def test_epc_symbol_is_segnos_make_epc_qr(fields: dict[str, Any]) -> None:
    """Latin-1 text: segno's own choice of character set is ours, so the symbols are the same."""
    data = EPCData(**(_WIKIMEDIA | fields))
    content = data.content()
    ours = make_symbol(content, Style(), EPC)
    theirs = segno.helpers.make_epc_qr(**_segno_fields(data))
    assert (ours.version, ours.error, ours.mode) == (theirs.version, theirs.error, theirs.mode)
    assert ours.matrix == theirs.matrix
    assert decode_png(render_images(content, Style(), EPC)["png"]) == [content]


def test_epc_beyond_latin_1_is_utf_8() -> None:
    # segno would pick ISO 8859-2 for Polish; the guidelines allow UTF-8 (1) for any text, which is also
    # what the encoding plan puts in the symbol.
    data = EPCData(**_WIKIMEDIA, text="Zażółć gęślą jaźń")
    content = data.content()
    assert content.split("\n")[2] == "1"
    assert plan_encoding(content).encoding == "utf-8"
    assert content.encode("utf-8") == segno.helpers._make_epc_qr_data(**_segno_fields(data), encoding=1)
    _reads_back(content, EPC)


def test_epc_symbol_keeps_level_m_where_segno_would_raise_it() -> None:
    # 43 bytes: a version 4 symbol, which at level Q holds 46.
    content = EPCData(name="N", iban="NO9386011117947", amount=1, text="xxx").content()
    assert make_symbol(content, Style(error="M")).designator == "4-Q"  # a free symbol gets the spare room
    assert make_symbol(content, Style(error="M"), EPC).designator == "4-M"


def test_epc_capacity_is_version_13_at_level_m() -> None:
    assert check_fits("a" * 331, "M", False, max_version=13).length == 331
    with pytest.raises(PayloadTooLong) as exc:
        check_fits("a" * 332, "M", False, max_version=13)
    assert str(exc.value) == (
        "the content is 332 bytes; a version 13 QR code at error level M holds at most 331 (use shorter content)"
    )
    assert segno.make_qr("a" * 331, error="M", boost_error=False).version == 13


@pytest.mark.parametrize("mode_char", ["7", "A", "a"])
@pytest.mark.parametrize("error", "LMQH")
def test_version_13_capacity_table_is_segnos(mode_char: str, error: str) -> None:
    plan = check_fits(mode_char, error, False, max_version=13)
    from app.qrcodes.symbol import capacity

    limit = capacity(plan.mode, error, False, 13)
    assert segno.make_qr(mode_char * limit, error=error, version=13, mode=plan.mode, boost_error=False, mask=0)
    with pytest.raises(segno.DataOverflowError):
        segno.make_qr(mode_char * (limit + 1), error=error, version=13, mode=plan.mode, boost_error=False, mask=0)


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"iban": "DE33 1002 0500 0001 1947 01"}, ("iban",)),  # check digits
        ({"iban": "XX33100205000001194700"}, ("iban",)),
        ({"iban": "DE" + "1" * 60}, ("iban",)),
        ({"bic": "NOTABIC"}, ("bic",)),
        ({"reference": "RF19 5390 0754 7034", "text": None}, ("reference",)),
        ({"amount": 0}, ("amount",)),
        ({"amount": "1000000000"}, ("amount",)),
        ({"amount": "1.005"}, ("amount",)),
        ({"amount": "NaN"}, ("amount",)),
        ({"name": "Evil\nSCT"}, ("name",)),
        ({"name": "x" * 71}, ("name",)),
        ({"text": "x" * 141}, ("text",)),
        ({"purpose": "charity"}, ("purpose",)),
        ({"reference": "RF18539007547034"}, ()),  # both text and reference
        ({"text": None}, ()),  # neither
    ],
)
def test_epc_refuses(fields: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as exc:
        EPCData(**{**_WIKIMEDIA, "text": "Gift", **fields})
    assert _locs(exc) == {loc}


def test_epc_normalises_identifiers() -> None:
    data = EPCData(**{**_WIKIMEDIA, "iban": " de33 1002 0500 0001 1947 00 ", "bic": "bfswde33muc", "text": "x"})
    assert (data.iban, data.bic, data.amount) == ("DE33100205000001194700", "BFSWDE33MUC", Decimal("20"))


@pytest.mark.parametrize(
    ("style", "loc"),
    [
        ({"error": "H"}, ("epc", "style", "error")),
        ({"error": "L"}, ("epc", "style", "error")),
        ({"micro": True, "error": "M"}, ("epc", "style", "micro")),
        ({"logo": "3fa85f64-5717-4562-b3fc-2c963f66afa6"}, ("epc", "style", "logo")),
    ],
)
def test_epc_request_refuses_styles_its_standard_forbids(style: dict[str, Any], loc: tuple[str, ...]) -> None:
    body = {"kind": "epc", "data": {**_WIKIMEDIA, "text": "Gift"}, "style": style}
    with pytest.raises(ValidationError) as exc:
        CREATE_CODE.validate_python(body)
    assert loc in _locs(exc)
