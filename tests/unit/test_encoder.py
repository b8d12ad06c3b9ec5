"""The fast encoder (app/qrcodes/encoder.py) against segno, the reference: the same version, error level,
mask and module matrix, for every kind's contents, every mode, level, QR version 1-40 and Micro M1-M4."""

from __future__ import annotations

import itertools
import os
import string
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import segno
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from segno import consts

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
from app.qrcodes.encoder import Symbol, encode
from app.qrcodes.rendering import encode_symbol, make_symbol
from app.qrcodes.style import Style
from app.qrcodes.symbol import FREE, SymbolRules, plan_encoding

ALPHANUMERIC = string.digits + string.ascii_uppercase + " $%*+-./:"
KANJI = "日本語漢字東京大阪京都駅電話番号住所氏名会社営業時間"
MICRO_VERSIONS = (consts.VERSION_M1, consts.VERSION_M2, consts.VERSION_M3, consts.VERSION_M4)


def _reference(content: str, error: str | None, mode: str | None, encoding: str | None, micro: bool,
               boost_error: bool = True, mask: int | None = None) -> segno.QRCode:
    return segno.make(content, error=error, mode=mode, encoding=encoding, micro=micro, boost_error=boost_error,
                      mask=mask)


def _assert_same(symbol: Symbol, reference: segno.QRCode) -> None:
    assert (symbol.version, symbol.error, symbol.mask) == (reference._version, reference._error, reference.mask)
    assert np.array_equal(symbol.matrix, np.array([list(row) for row in reference.matrix], dtype=np.uint8))
    assert symbol.qrcode().matrix == tuple(reference.matrix)


def _both(content: str, error: str | None, mode: str | None, encoding: str | None, micro: bool,
          boost_error: bool = True, mask: int | None = None) -> None:
    """Either both encode the same symbol or both refuse the content the same way."""
    try:
        reference = _reference(content, error, mode, encoding, micro, boost_error, mask)
    except ValueError as refused:
        with pytest.raises(type(refused)):
            encode(content, error, mode, encoding, micro, boost_error, mask)
        return
    _assert_same(encode(content, error, mode, encoding, micro, boost_error, mask), reference)


# --- every kind, as the renderer plans it ---------------------------------------------------------------

_TEXT = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=60)
_WORDS = st.text(ALPHANUMERIC + string.ascii_lowercase + "éü-_", min_size=1, max_size=40)
_KIND_CONTENTS = st.one_of(
    _WORDS.map(lambda path: URLData(url=f"https://example.com/{path.replace(' ', '-')}").content()),
    _TEXT.map(lambda text: TextData(text=text).content()),
    st.builds(lambda ssid, password: WifiData(ssid=ssid[:32], password=password).content(), _TEXT, _WORDS),
    st.builds(lambda name, org: VCardData(name=name, org=org, email="ada@example.com").content(), _TEXT, _TEXT),
    st.builds(lambda subject, body: EmailData(to="ada@example.com", subject=subject, body=body).content(),
              _TEXT, _TEXT),
    _TEXT.map(lambda text: SMSData(number="+1 555 010 9999", text=text).content()),
    st.integers(10**6, 10**12).map(lambda number: PhoneData(number=f"+{number}").content()),
    st.builds(lambda lat, lng: GeoData(lat=lat, lng=lng).content(),
              st.floats(-90, 90, allow_nan=False), st.floats(-180, 180, allow_nan=False)),
    st.builds(lambda summary, hours: EventData(summary=summary, start=datetime(2030, 4, 2, tzinfo=UTC),
                                               end=datetime(2030, 4, 2, tzinfo=UTC) + timedelta(hours=hours)).content(),
              _TEXT, st.integers(1, 100)),
    st.builds(lambda name, memo: MeCardData(name=name, memo=memo).content(), _TEXT, _TEXT),
    _WORDS.map(lambda text: EPCData(name="Wikimedia Foerdergesellschaft", iban="DE33 1002 0500 0001 1947 00",
                                    amount=20, text=text)),
)


@st.composite
def kind_cases(draw: st.DrawFn) -> tuple[str, Style, SymbolRules]:
    try:
        data = draw(_KIND_CONTENTS)
    except ValidationError:
        assume(False)
    # EPC's standard fixes its symbol (level M, not raised); the other kinds are free.
    content, rules = (data.content(), data.symbol) if isinstance(data, EPCData) else (data, FREE)
    micro = rules is FREE and draw(st.booleans()) and len(content) <= 35
    error = draw(st.sampled_from("LMQ" if micro else "LMQH"))
    return content, Style(error=error, micro=micro), rules


@settings(max_examples=150, deadline=None, database=None)
@given(kind_cases())
def test_every_kind_encodes_to_segnos_matrix(case: tuple[str, Style, SymbolRules]) -> None:
    content, style, rules = case
    plan = plan_encoding(content)
    try:
        reference = _reference(content, rules.error or style.error, plan.mode, plan.encoding, style.micro,
                               rules.boost_error)
    except segno.DataOverflowError:
        with pytest.raises(segno.DataOverflowError):
            encode_symbol(content, style, rules)
        return
    _assert_same(encode_symbol(content, style, rules), reference)
    assert make_symbol(content, style, rules).matrix == tuple(reference.matrix)


# --- modes, levels, versions 1-40 and Micro ----------------------------------------------------------------

_SEEDS = {
    "numeric": st.text(string.digits, min_size=1, max_size=12),
    "alphanumeric": st.text(ALPHANUMERIC, min_size=1, max_size=12),
    "byte": st.text(st.characters(codec="latin-1"), min_size=1, max_size=12),
    "kanji": st.text(KANJI, min_size=1, max_size=6),
}
_ENCODINGS = {"numeric": None, "alphanumeric": None, "byte": "iso-8859-1", "kanji": None}


@st.composite
def mode_cases(draw: st.DrawFn) -> tuple[str, str, str | None, bool, bool]:
    mode = draw(st.sampled_from(sorted(_SEEDS)))
    micro = draw(st.booleans())
    error = draw(st.sampled_from("LMQ" if micro else "LMQH"))
    seed = draw(_SEEDS[mode])
    # Lengths up to a version 40 symbol's, small ones more often (a large symbol costs segno ~0.5 s).
    length = draw(st.one_of(st.integers(1, 40), st.integers(1, 7089)))
    content = "".join(itertools.islice(itertools.cycle(seed), length))
    return content, error, mode, micro, draw(st.booleans())


@settings(max_examples=120, deadline=None, database=None)
@given(mode_cases())
def test_every_mode_level_and_size_encodes_to_segnos_matrix(case: tuple[str, str, str, bool, bool]) -> None:
    content, error, mode, micro, boost_error = case
    _both(content, error, mode, _ENCODINGS[mode], micro, boost_error)


# --- the exhaustive sweep: every version, level and mask ----------------------------------------------------


def _filling(version: int, error: int) -> str:
    """Random bytes (as Latin-1 text) that fill `version` at `error` in byte mode."""
    counter = consts.CHAR_COUNT_INDICATOR_LENGTH[consts.MODE_BYTE]
    overhead = 4 + counter[segno.encoder.version_range(version)]
    length = (consts.SYMBOL_CAPACITY[version][error] - overhead) // 8
    return os.urandom(length).decode("latin-1")


_LEVELS = {"L": consts.ERROR_LEVEL_L, "M": consts.ERROR_LEVEL_M, "Q": consts.ERROR_LEVEL_Q, "H": consts.ERROR_LEVEL_H}


@pytest.mark.parametrize("version", range(1, 41))
def test_every_version_level_and_mask(version: int) -> None:
    for name, level in _LEVELS.items():
        content = _filling(version, level)
        chosen = encode(content, name, "byte", "latin-1", micro=False, boost_error=False)
        reference = _reference(content, name, "byte", "latin-1", micro=False, boost_error=False)
        assert reference.version == version
        _assert_same(chosen, reference)
        for mask in range(8):
            _both(content, name, "byte", "latin-1", False, boost_error=False, mask=mask)


_MICRO_CONTENTS = {  # each Micro version's largest mode
    consts.VERSION_M1: ("numeric", None, string.digits),
    consts.VERSION_M2: ("alphanumeric", None, ALPHANUMERIC),
    consts.VERSION_M3: ("byte", "latin-1", string.printable),
    consts.VERSION_M4: ("byte", "latin-1", string.printable),
}


def _micro_filling(version: int, error: int | None, mode: str, encoding: str | None, alphabet: str) -> str:
    """The longest content of `alphabet` that segno fits in Micro `version` at `error`."""
    capacity = consts.SYMBOL_CAPACITY[version][error]
    content = ""
    while True:
        longer = content + alphabet[len(content) * 7 % len(alphabet)]
        segments = segno.encoder.prepare_data(longer, segno.encoder.normalize_mode(mode), encoding)
        if segments.bit_length_with_overhead(version, False) > capacity:
            return content
        content = longer


@pytest.mark.parametrize("version", MICRO_VERSIONS)
def test_every_micro_version_level_and_mask(version: int) -> None:
    name = segno.encoder.get_version_name(version)
    mode, encoding, alphabet = _MICRO_CONTENTS[version]
    for level in {"M1": [None], "M2": ["L", "M"], "M3": ["L", "M"], "M4": ["L", "M", "Q"]}[name]:
        content = _micro_filling(version, _LEVELS.get(level or ""), mode, encoding, alphabet)
        reference = _reference(content, level, mode, encoding, micro=True, boost_error=False)
        assert reference.version == name
        _assert_same(encode(content, level, mode, encoding, micro=True, boost_error=False), reference)
        for mask in range(4):
            _both(content, level, mode, encoding, True, boost_error=False, mask=mask)
