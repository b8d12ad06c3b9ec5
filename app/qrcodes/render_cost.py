"""What a code will cost a worker to render, estimated in the gateway before the code is accepted.

The cost is in seconds of one reference core (measured with bench/render_cost.py, which prints the
figures this model predicts beside the ones it measures). What drives it is the PNG's pixels: the symbol's
modules (from its content and error level) and its quiet zone, times the scale, squared. Plain codes are
written by segno row by row; module colours and a logo are composited in Pillow's RGBA pixels and read
back by a decoder (readback.py), about 9 and 18 times the work per pixel, and ~15 and ~18 bytes of memory
per pixel (a few RGBA copies). The vector formats cost per module, not per pixel. Measured between this
machine's quiet runs (bench/render_cost.py) and issue #13's figures on a busy one (0.85 s, 8 s and 15 s
for 109 million pixels).

One code over QRFLOW_MAX_RENDER_COST, or a batch whose codes add up to more than
QRFLOW_MAX_BATCH_RENDER_COST, is refused (422): a worker's process then never holds more than a few
seconds of work, or a gigabyte, for one code, and one batch cannot queue hours of it.
"""

from __future__ import annotations

from typing import Any

from app.qrcodes.symbol import plan_encoding

# Data bits of QR versions 1..40 at each level (ISO/IEC 18004 table 7, as segno.consts.SYMBOL_CAPACITY).
_DATA_BITS = {
    "L": (152, 272, 440, 640, 864, 1088, 1248, 1552, 1856, 2192, 2592, 2960, 3424, 3688, 4184, 4712, 5176, 5768,
          6360, 6888, 7456, 8048, 8752, 9392, 10208, 10960, 11744, 12248, 13048, 13880, 14744, 15640, 16568, 17528,
          18448, 19472, 20528, 21616, 22496, 23648),
    "M": (128, 224, 352, 512, 688, 864, 992, 1232, 1456, 1728, 2032, 2320, 2672, 2920, 3320, 3624, 4056, 4504,
          5016, 5352, 5712, 6256, 6880, 7312, 8000, 8496, 9024, 9544, 10136, 10984, 11640, 12328, 13048, 13800,
          14496, 15312, 15936, 16816, 17728, 18672),
    "Q": (104, 176, 272, 384, 496, 608, 704, 880, 1056, 1232, 1440, 1648, 1952, 2088, 2360, 2600, 2936, 3176,
          3560, 3880, 4096, 4544, 4912, 5312, 5744, 6032, 6464, 6968, 7288, 7880, 8264, 8920, 9368, 9848, 10288,
          10832, 11408, 12016, 12656, 13328),
    "H": (72, 128, 208, 288, 368, 480, 528, 688, 800, 976, 1120, 1264, 1440, 1576, 1784, 2024, 2264, 2504, 2728,
          3080, 3248, 3536, 3712, 4112, 4304, 4768, 5024, 5288, 5608, 5960, 6344, 6760, 7208, 7688, 7888, 8432,
          8768, 9136, 9776, 10208),
}
# Bits of the character count indicator, by mode, for versions 1-9, 10-26 and 27-40.
_COUNT_BITS = {"numeric": (10, 12, 14), "alphanumeric": (9, 11, 13), "byte": (8, 16, 16)}
_MICRO_M4_MODULES = 17

# Seconds of a reference core (bench/render_cost.py): per code, per module (the matrix and the vector
# formats), and per PNG pixel for a plain code, one with module colours, one with a logo (plus drawing
# the logo itself, at most 1024 px in its sandbox).
_PER_CODE = 0.005
_PER_MODULE = 7e-6
_PER_PIXEL = {"plain": 6e-9, "colours": 55e-9, "logo": 110e-9}
_PER_LOGO = 0.1


def modules(content: str, error: str, micro: bool) -> int:
    """The symbol's width in modules, quiet zone excluded: the smallest version the content fits in."""
    if micro:
        return _MICRO_M4_MODULES
    plan = plan_encoding(content)
    if plan.mode == "numeric":
        data = 10 * (plan.length // 3) + (0, 4, 7)[plan.length % 3]
    elif plan.mode == "alphanumeric":
        data = 11 * (plan.length // 2) + 6 * (plan.length % 2)
    else:
        data = 8 * plan.length
    for version, capacity in enumerate(_DATA_BITS[error], start=1):
        count = _COUNT_BITS[plan.mode][0 if version < 10 else 1 if version < 27 else 2]
        if 4 + count + data <= capacity:
            return 17 + 4 * version
    return 17 + 4 * 40


def estimate(content: str, style: dict[str, Any]) -> float:
    """Seconds of a reference core to render every image of a code with this content and (stored) style."""
    micro = bool(style.get("micro"))
    width = modules(content, style.get("error", "M"), micro)
    border = style.get("border")
    side = (width + 2 * (border if border is not None else 2 if micro else 4)) * style.get("scale", 10)
    if style.get("logo") is not None:
        kind, extra = "logo", _PER_LOGO
    elif any(key.endswith(("_dark", "_light")) or key == "quiet_zone" for key in style):
        kind, extra = "colours", 0.0
    else:
        kind, extra = "plain", 0.0
    return _PER_CODE + extra + width * width * _PER_MODULE + side * side * _PER_PIXEL[kind]


def too_costly(cost: float, limit: float) -> str | None:
    """The reason a code of this cost is refused, or None."""
    if cost <= limit:
        return None
    return (
        f"rendering this code would take about {cost:.1f} s of a worker's CPU; at most {limit:g} s "
        "(use a smaller scale or border, shorter content, or fewer module colours)"
    )
