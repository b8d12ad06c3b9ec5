"""How a content string goes into a symbol, and whether it fits — decided before anything is rendered.

qrflow chooses the encoding itself instead of leaving it to the encoder's guess: numeric or alphanumeric
mode where every character allows it, otherwise byte mode in ISO-8859-1 when that can represent the text
and UTF-8 when it cannot (what phone scanners expect; Shift_JIS, which segno would pick for Japanese
text, is read as mojibake by many of them). The renderer is given this plan, so the capacity check here
and the symbol the worker draws can never disagree.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal

ErrorLevel = Literal["L", "M", "Q", "H"]
Mode = Literal["numeric", "alphanumeric", "byte"]

_ALPHANUMERIC = frozenset(string.digits + string.ascii_uppercase + " $%*+-./:")

# Characters (bytes, in byte mode) that the largest symbol holds, from ISO/IEC 18004 tables 7 and 9:
# QR Code version 40 and Micro QR Code M4 (which has no level H).
_QR_V40_CAPACITY: dict[Mode, dict[str, int]] = {
    "numeric": {"L": 7089, "M": 5596, "Q": 3993, "H": 3057},
    "alphanumeric": {"L": 4296, "M": 3391, "Q": 2420, "H": 1852},
    "byte": {"L": 2953, "M": 2331, "Q": 1663, "H": 1273},
}
# QR Code version 13: the largest symbol the EPC payment guidelines allow.
_QR_V13_CAPACITY: dict[Mode, dict[str, int]] = {
    "numeric": {"L": 1022, "M": 796, "Q": 580, "H": 427},
    "alphanumeric": {"L": 619, "M": 483, "Q": 352, "H": 259},
    "byte": {"L": 425, "M": 331, "Q": 241, "H": 177},
}
_QR_CAPACITY_BY_VERSION = {40: _QR_V40_CAPACITY, 13: _QR_V13_CAPACITY}
_MICRO_M4_CAPACITY: dict[Mode, dict[str, int]] = {
    "numeric": {"L": 35, "M": 30, "Q": 21},
    "alphanumeric": {"L": 21, "M": 18, "Q": 13},
    "byte": {"L": 15, "M": 13, "Q": 9},
}


@dataclass(frozen=True)
class SymbolRules:
    """What a kind's own standard fixes about its symbol, beyond what the client's style asks for.

    EPC payment codes, for one, must use error level M exactly (no boost to a higher level) and at most
    version 13, so a banking app can rely on the symbol's shape."""

    error: ErrorLevel | None = None  # None: the style's level, which segno may raise where room is left
    max_version: int = 40

    @property
    def boost_error(self) -> bool:
        return self.error is None


FREE = SymbolRules()


@dataclass(frozen=True)
class EncodingPlan:
    mode: Mode
    encoding: str | None  # byte mode only
    length: int  # characters, or bytes in byte mode

    @property
    def unit(self) -> str:
        return "bytes" if self.mode == "byte" else f"{self.mode} characters"


class PayloadTooLong(ValueError):
    def __init__(self, plan: EncodingPlan, limit: int, error: str, micro: bool, max_version: int = 40) -> None:
        symbol = "a Micro QR code" if micro else "a QR code"
        if max_version != 40:
            symbol = f"a version {max_version} QR code"
        # A version-limited symbol belongs to a standard that fixes its level too: only shorter content helps.
        more_room = micro or (error != "L" and max_version == 40)
        hint = "use a lower error level, a regular QR code, or shorter content" if more_room else "use shorter content"
        super().__init__(
            f"the content is {plan.length} {plan.unit}; {symbol} at error level {error} "
            f"holds at most {limit} ({hint})"
        )
        self.length = plan.length
        self.limit = limit


def plan_encoding(content: str) -> EncodingPlan:
    if content and content.isascii() and content.isdigit():
        return EncodingPlan("numeric", None, len(content))
    if content and all(ch in _ALPHANUMERIC for ch in content):
        return EncodingPlan("alphanumeric", None, len(content))
    try:
        return EncodingPlan("byte", "iso-8859-1", len(content.encode("iso-8859-1")))
    except UnicodeEncodeError:
        return EncodingPlan("byte", "utf-8", len(content.encode("utf-8")))


def capacity(mode: Mode, error: str, micro: bool, max_version: int = 40) -> int | None:
    """None when the combination does not exist (Micro QR has no level H)."""
    table = _MICRO_M4_CAPACITY if micro else _QR_CAPACITY_BY_VERSION[max_version]
    return table[mode].get(error)


def check_fits(content: str, error: str, micro: bool, max_version: int = 40) -> EncodingPlan:
    plan = plan_encoding(content)
    limit = capacity(plan.mode, error, micro, max_version)
    if limit is None:
        raise ValueError(f"Micro QR codes have no error level {error}")
    if plan.length > limit:
        raise PayloadTooLong(plan, limit, error, micro, max_version)
    return plan
