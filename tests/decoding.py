"""Reading rendered codes back with zxing-cpp, the way a phone scanner would.

Every barcode format stays enabled so Micro QR codes are read too. Images are flattened onto white first:
a transparent background has no colour of its own, and zxing-cpp would otherwise see it as black.
"""

from __future__ import annotations

import io
import math

import resvg_py
import zxingcpp
from PIL import Image

# segno's SVG is one user unit per module at scale 1; a few pixels per module keep rasterised edges readable.
_MIN_SVG_SIDE = 400


def _flatten(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, "white")
    return Image.alpha_composite(white, rgba).convert("L")


def _decode_image(image: Image.Image) -> list[str]:
    return [barcode.text for barcode in zxingcpp.read_barcodes(_flatten(image))]


def decode_png(data: bytes) -> list[str]:
    with Image.open(io.BytesIO(data)) as image:
        return _decode_image(image)


def _rasterise(svg: str, zoom: int) -> Image.Image:
    # bytes() also takes the list of ints that some resvg-py releases return instead of bytes.
    png = bytes(resvg_py.svg_to_bytes(svg_string=svg, zoom=zoom))
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def decode_svg(data: bytes) -> list[str]:
    svg = data.decode("utf-8")
    image = _rasterise(svg, zoom=1)
    smaller_side = min(image.size)
    if smaller_side < _MIN_SVG_SIDE:
        image = _rasterise(svg, zoom=math.ceil(_MIN_SVG_SIDE / smaller_side))
    return _decode_image(image)
