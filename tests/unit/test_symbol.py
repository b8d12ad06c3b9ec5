"""The gateway's capacity check (no segno) against what segno actually fits in a symbol."""

from __future__ import annotations

import itertools
import string

import pytest
import segno
from hypothesis import given, settings
from hypothesis import strategies as st

from app.qrcodes.symbol import EncodingPlan, Mode, PayloadTooLong, capacity, check_fits, plan_encoding

ALPHANUMERIC_CHARSET = string.digits + string.ascii_uppercase + " $%*+-./:"
QR_ERRORS = "LMQH"
MICRO_ERRORS = "LMQ"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("0123456789", EncodingPlan("numeric", None, 10)),
        ("7", EncodingPlan("numeric", None, 1)),
        ("HELLO WORLD", EncodingPlan("alphanumeric", None, 11)),
        (ALPHANUMERIC_CHARSET, EncodingPlan("alphanumeric", None, 45)),
        ("12 34", EncodingPlan("alphanumeric", None, 5)),
        ("HTTPS://EXAMPLE.COM/R/ABC", EncodingPlan("alphanumeric", None, 25)),
        ("hello", EncodingPlan("byte", "iso-8859-1", 5)),
        ("HELLO!", EncodingPlan("byte", "iso-8859-1", 6)),
        ("https://example.com/r/abc", EncodingPlan("byte", "iso-8859-1", 25)),
        ("Café crème", EncodingPlan("byte", "iso-8859-1", 10)),
        ("²", EncodingPlan("byte", "iso-8859-1", 1)),  # a digit to str.isdigit(), not to numeric mode
        ("€", EncodingPlan("byte", "utf-8", 3)),  # Windows-1252 has it, ISO-8859-1 does not
        ("١٢٣", EncodingPlan("byte", "utf-8", 6)),  # Arabic-Indic digits
        ("Grüße ✓ 日本", EncodingPlan("byte", "utf-8", 18)),
        ("😀", EncodingPlan("byte", "utf-8", 4)),
    ],
)
def test_plan_encoding(content: str, expected: EncodingPlan) -> None:
    assert plan_encoding(content) == expected


def test_plan_units() -> None:
    assert plan_encoding("123").unit == "numeric characters"
    assert plan_encoding("ABC").unit == "alphanumeric characters"
    assert plan_encoding("abc").unit == "bytes"


def _content_of(plan_name: str, length: int) -> str:
    """length units (characters, or bytes in byte mode) of content that plan_encoding plans as plan_name."""
    match plan_name:
        case "numeric":
            return "7" * length
        case "alphanumeric":
            return "A" * length
        case "latin-1":
            return "é" * length
        case "utf-8":
            return "日" + "a" * (length - len("日".encode()))
    raise AssertionError(plan_name)


_PLANS: dict[str, tuple[Mode, str | None]] = {
    "numeric": ("numeric", None),
    "alphanumeric": ("alphanumeric", None),
    "latin-1": ("byte", "iso-8859-1"),
    "utf-8": ("byte", "utf-8"),
}
_LARGEST_SYMBOLS = [(False, error) for error in QR_ERRORS] + [(True, error) for error in MICRO_ERRORS]


def _make(micro: bool, content: str, error: str, plan: EncodingPlan) -> segno.QRCode:
    make = segno.make_micro if micro else segno.make_qr
    # A fixed mask skips segno's mask evaluation, most of the cost of a version 40 symbol; capacity does not
    # depend on the mask.
    return make(content, error=error, mode=plan.mode, encoding=plan.encoding, mask=0)


@pytest.mark.parametrize("plan_name", _PLANS)
@pytest.mark.parametrize(("micro", "error"), _LARGEST_SYMBOLS)
def test_capacity_boundary_is_exact(plan_name: str, micro: bool, error: str) -> None:
    mode, encoding = _PLANS[plan_name]
    limit = capacity(mode, error, micro)
    assert limit is not None

    largest = _content_of(plan_name, limit)
    plan = check_fits(largest, error, micro)
    assert plan == EncodingPlan(mode, encoding, limit)
    symbol = _make(micro, largest, error, plan)
    assert (symbol.version, symbol.error) == ("M4" if micro else 40, error)

    too_long = _content_of(plan_name, limit + 1)
    with pytest.raises(PayloadTooLong) as exc:
        check_fits(too_long, error, micro)
    assert (exc.value.length, exc.value.limit) == (limit + 1, limit)
    assert f"is {limit + 1} {plan.unit}" in str(exc.value)
    assert f"at most {limit}" in str(exc.value)
    with pytest.raises(segno.DataOverflowError):
        _make(micro, too_long, error, plan_encoding(too_long))


@pytest.mark.parametrize("plan_name", _PLANS)
def test_micro_has_no_level_h(plan_name: str) -> None:
    mode, _ = _PLANS[plan_name]
    assert capacity(mode, "H", micro=True) is None
    with pytest.raises(ValueError) as exc:
        check_fits(_content_of(plan_name, 3), "H", micro=True)
    assert not isinstance(exc.value, PayloadTooLong)


@pytest.mark.parametrize(
    ("micro", "error", "hint"),
    [
        (False, "L", "(use shorter content)"),
        (False, "H", "(use a lower error level, a regular QR code, or shorter content)"),
        (True, "L", "(use a lower error level, a regular QR code, or shorter content)"),
    ],
)
def test_payload_too_long_hint(micro: bool, error: str, hint: str) -> None:
    with pytest.raises(PayloadTooLong) as exc:
        check_fits("x" * 3000, error, micro)
    assert str(exc.value).endswith(hint)
    assert ("a Micro QR code" if micro else "a QR code") in str(exc.value)


# --- check_fits agrees with segno ------------------------------------------------------------------------

_SEEDS: dict[str, st.SearchStrategy[str]] = {
    "numeric": st.text(alphabet=string.digits, min_size=1, max_size=12),
    "alphanumeric": st.text(alphabet=ALPHANUMERIC_CHARSET, min_size=1, max_size=12),
    "latin-1": st.text(alphabet=st.characters(codec="latin-1"), min_size=1, max_size=12),
    "unicode": st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12),
}
_SEED_MODES: dict[str, Mode] = {
    "numeric": "numeric",
    "alphanumeric": "alphanumeric",
    "latin-1": "byte",
    "unicode": "byte",
}


def _repeat(seed: str, units: int, in_utf8_bytes: bool) -> str:
    """seed's characters over and over, up to units characters (or UTF-8 bytes).

    Repeating a short drawn seed keeps Hypothesis's input small even for 7,089-character contents.
    """
    if not in_utf8_bytes:
        return "".join(itertools.islice(itertools.cycle(seed), units))
    chars: list[str] = []
    size = 0
    for ch in itertools.cycle(seed):
        ch_size = len(ch.encode())
        if size + ch_size > units:
            break
        chars.append(ch)
        size += ch_size
    return "".join(chars)


@st.composite
def near_capacity(draw: st.DrawFn) -> tuple[str, str, bool]:
    """A content string whose length is within a few units of the largest symbol's capacity."""
    micro = draw(st.booleans())
    error = draw(st.sampled_from(MICRO_ERRORS if micro else QR_ERRORS))
    alphabet = draw(st.sampled_from(sorted(_SEEDS)))
    seed = draw(_SEEDS[alphabet])
    limit = capacity(_SEED_MODES[alphabet], error, micro)
    assert limit is not None
    units = draw(st.integers(max(1, limit - 3), limit + 3))
    return _repeat(seed, units, in_utf8_bytes=alphabet == "unicode"), error, micro


@settings(max_examples=80, deadline=None, database=None)
@given(near_capacity())
def test_check_fits_agrees_with_segno(case: tuple[str, str, bool]) -> None:
    content, error, micro = case
    plan = plan_encoding(content)
    try:
        check_fits(content, error, micro)
    except PayloadTooLong:
        gateway_fits = False
    else:
        gateway_fits = True
    try:
        _make(micro, content, error, plan)
    except segno.DataOverflowError:
        segno_fits = False
    else:
        segno_fits = True
    assert gateway_fits == segno_fits, f"{plan} at level {error}, micro={micro}"
