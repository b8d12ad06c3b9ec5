"""The worker's own check of a styled code: an independent decoder (zxing-cpp) must read its PNG back
to exactly the bytes of its content before the code is `ready`. Colours and a logo are where a code can
look fine and not scan; plain black-on-white codes are not checked (segno's output is the reference).
"""

from __future__ import annotations

import io

import zxingcpp
from PIL import Image

from app.qrcodes.symbol import plan_encoding

LOGO_TOO_LARGE = "the logo covers too much of the code to be read; use a smaller logo_size"
UNREADABLE_COLOURS = (
    "the code cannot be read back with these colours; use more contrast between dark and light modules"
)


def reads_back(png: bytes, content: str) -> bool:
    plan = plan_encoding(content)
    # Bytes, not text: the text is the decoder's guess at a character set, the bytes are what was encoded.
    expected = content.encode(plan.encoding or "ascii")
    return [barcode.bytes for barcode in _barcodes(png)] == [expected]


def decoded_texts(png: bytes) -> list[str]:
    """What a scanner reads in the image, as text: what the dashboard's preview shows under the code."""
    return [barcode.text for barcode in _barcodes(png)]


def _barcodes(png: bytes) -> list[zxingcpp.Barcode]:
    with Image.open(io.BytesIO(png)) as image:
        rgba = image.convert("RGBA")
    # A transparent background has no colour of its own: a scanner sees the paper, so white here.
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("L")
    return zxingcpp.read_barcodes(flat)
