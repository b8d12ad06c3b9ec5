"""Uploaded logo files: what is accepted (checked in the gateway) and how one becomes pixels (in workers).

A PNG must open in Pillow and decode completely, within a bounded pixel count, checked before a pixel is
decompressed. An SVG is parsed with defusedxml (no DTD, no entities), and holds only the elements and
attributes a drawing needs (svg_allowlist.py: nothing that runs a script or loads anything, no reference
out of the document but embedded raster images, which are measured here); then resvg must render it.
Logos are only ever drawn by qrflow, and embedded in the SVG output as an <image>, where browsers run no
script and load nothing anyway: the checks make the file itself safe to keep and to hand to a renderer.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from xml.etree.ElementTree import TreeBuilder

from defusedxml import ElementTree as SafeET
from PIL import Image

from app.qrcodes import logo_budget, logo_sandbox, svg_allowlist

MEDIA_TYPES = {"image/png": "png", "image/svg+xml": "svg"}
MAX_LOGO_BYTES = 512 * 1024
# Far more than a logo needs (it is drawn at a few hundred pixels); bounds decompression.
MAX_SIDE = 4096
MAX_PIXELS = 16 * 1024 * 1024
MAX_SVG_ELEMENTS = 10_000
# The largest side a worker rasterises an SVG logo at; a larger logo box gets it scaled up (at scale 50
# a box can be 4,000 px wide, where resvg's cost would be 16 times this one's). The upload check draws it
# at this size, so a logo that passes it is known to draw within the worker's limits.
MAX_DRAW_SIDE = 1024

_SVG = "{http://www.w3.org/2000/svg}"
_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(px|pt|pc|mm|cm|in)?\s*$")
_PX_PER_UNIT = {None: 1.0, "px": 1.0, "pt": 96 / 72, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}


class LogoRefused(ValueError):
    """The upload is not an acceptable logo; the message says why, for the client."""


@dataclass(frozen=True)
class LogoImage:
    media_type: str
    width: int
    height: int


def inspect(media_type: str, data: bytes) -> LogoImage:
    """Validates an upload of the given media type (one of MEDIA_TYPES) and returns its size in pixels."""
    if not data:
        raise LogoRefused("the body is empty: send the image itself")
    if len(data) > MAX_LOGO_BYTES:
        raise LogoRefused(f"the logo is {len(data)} bytes; the limit is {MAX_LOGO_BYTES}")
    return _inspect_png(data) if media_type == "image/png" else _inspect_svg(data)


def _inspect_png(data: bytes) -> LogoImage:
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            width, height = image.size
            _check_size(width, height)
            image.load()  # decodes every row: a truncated or corrupt file fails here, not in a worker
            alpha = image.convert("RGBA").getchannel("A").getextrema()
    except LogoRefused:
        raise
    except Exception as exc:  # Pillow raises many kinds (SyntaxError, OSError, zlib.error…) for bad files
        raise LogoRefused(f"not a readable PNG image ({type(exc).__name__})") from None
    if alpha[1] == 0:
        raise LogoRefused("the PNG is fully transparent")
    return LogoImage("image/png", width, height)


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1 or max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise LogoRefused(f"the image is {width}×{height} pixels; at most {MAX_SIDE} on a side")


def _inspect_svg(data: bytes) -> LogoImage:
    try:
        text = data.decode("utf-8-sig")  # a byte order mark, as some editors write, is not text
    except UnicodeDecodeError:
        raise LogoRefused("an SVG logo must be UTF-8 text") from None
    builder = _Builder()
    try:
        parser = SafeET.DefusedXMLParser(target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        parser.feed(text)
        root = parser.close()
    except Exception as exc:  # ParseError, and defusedxml's DTDForbidden, EntitiesForbidden…
        raise LogoRefused(f"not a well-formed SVG document ({type(exc).__name__})") from None
    if builder.instructions:
        raise LogoRefused("the SVG has a processing instruction; none is allowed")
    if root.tag != f"{_SVG}svg":
        raise LogoRefused("the document's root element is not an SVG <svg> element")
    _check_svg_tree(root)
    width, height = svg_size(root)
    try:
        logo_budget.check(root, width, height, MAX_DRAW_SIDE)
    except logo_budget.OverBudget as exc:
        raise LogoRefused(str(exc)) from None
    # resvg must draw it, within the limits a worker draws it with: else it would fail there instead.
    try:
        png = _render_svg(text, width, height, MAX_DRAW_SIDE, logo_sandbox.CHECK_LIMITS)
        with Image.open(io.BytesIO(png)) as rendered:
            alpha = rendered.convert("RGBA").getchannel("A").getextrema()
    except logo_sandbox.SandboxFailed as exc:
        raise LogoRefused(str(exc)) from None
    except Exception as exc:
        raise LogoRefused(f"the SVG cannot be rendered ({exc})") from None
    if alpha[1] == 0:
        raise LogoRefused("the SVG draws nothing (fully transparent)")
    return LogoImage("image/svg+xml", round(width), round(height))


class _Builder(TreeBuilder):
    """Counts processing instructions, wherever they are (ElementTree keeps none outside the root):
    <?xml-stylesheet href=…?> loads a style sheet. The XML declaration is not one."""

    def __init__(self) -> None:
        super().__init__()
        self.instructions = 0

    def pi(self, target: str, text: str | None = None) -> SafeET.Element:
        self.instructions += 1
        return super().pi(target, text)


def _check_svg_tree(root: SafeET.Element) -> None:
    try:
        embedded = svg_allowlist.check(root, MAX_SVG_ELEMENTS)
    except svg_allowlist.NotAllowed as exc:
        raise LogoRefused(str(exc)) from None
    for href in embedded:
        _check_embedded_image(href)


def _check_embedded_image(href: str) -> None:
    """An embedded image is decoded by the renderer at its full size: its header must say a bounded one."""
    try:
        raw = base64.b64decode(href.partition(",")[2], validate=False)
        with Image.open(io.BytesIO(raw), formats=["PNG", "JPEG", "GIF", "WEBP"]) as image:
            size = image.size
    except Exception:
        raise LogoRefused("the SVG embeds an image that cannot be read") from None
    _check_size(*size)


def svg_size(root: SafeET.Element) -> tuple[float, float]:
    """The SVG's intrinsic size in CSS pixels: width and height, or the viewBox's where they are missing
    or relative (percentages)."""
    view_box = re.split(r"[\s,]+", root.attrib.get("viewBox", "").strip())
    box: tuple[float, float] | None = None
    if len(view_box) == 4:
        try:
            box = (float(view_box[2]), float(view_box[3]))
        except ValueError:
            box = None
    sides = []
    for name, index in (("width", 0), ("height", 1)):
        match = _LENGTH.match(root.attrib.get(name, ""))
        if match:
            sides.append(float(match.group(1)) * _PX_PER_UNIT[match.group(2)])
        elif box is not None:
            sides.append(box[index])
        else:
            raise LogoRefused("the SVG needs a viewBox, or a width and a height")
    width, height = sides
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise LogoRefused(f"the SVG is {width:g}×{height:g} pixels; between 1 and {MAX_SIDE} on a side")
    return width, height


def _fit(width: float, height: float, side: int) -> tuple[int, int]:
    """Width and height within a side×side square, the aspect ratio kept."""
    factor = side / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


_ROOT_TAG = re.compile(r"<svg\b[^>]*>")
_SIZE_ATTRIBUTE = re.compile(r"""(\s(?:width|height)\s*=\s*)(["'])[^"']*\2""")


def _render_svg(text: str, width: float, height: float, side: int, limits: logo_sandbox.Limits) -> bytes:
    # resvg-py refuses absolute units in the root's width and height (mm, in, pt: "invalid size"), which
    # design tools write: they are given to it in pixels, as measured here.
    def in_pixels(tag: re.Match[str]) -> str:
        return _SIZE_ATTRIBUTE.sub(lambda m: f'{m.group(1)}"{_px(m.group(0), width, height)}"', tag.group(0))

    text = _ROOT_TAG.sub(in_pixels, text, count=1)
    target_w, target_h = _fit(width, height, side)
    # Never in this process: see logo_sandbox.py.
    return logo_sandbox.render_svg(text, target_w, target_h, limits)


def _px(attribute: str, width: float, height: float) -> str:
    return f"{width:g}" if attribute.lstrip().startswith("width") else f"{height:g}"


def rasterise(media_type: str, data: bytes, side: int) -> Image.Image:
    """The logo as RGBA pixels, fitted into a side×side square (never enlarged past a PNG's own size,
    which would only blur it; the caller scales it into place)."""
    if media_type == "image/png":
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            rgba = image.convert("RGBA")
        if max(rgba.size) > side:
            rgba = rgba.resize(_fit(*rgba.size, side), Image.Resampling.LANCZOS)
        return rgba
    text = data.decode("utf-8-sig")
    root = SafeET.fromstring(text, forbid_dtd=True)
    png = _render_svg(text, *svg_size(root), min(side, MAX_DRAW_SIDE), logo_sandbox.DRAW_LIMITS)
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGBA")
