"""The fast writers (app/qrcodes/raster.py: PNG, SVG; documents.py: PDF, EPS) against segno's own writers
on the same matrix, and render_images: segno's images in every format, and PNG and SVG read back."""

from __future__ import annotations

import io
import re

import pytest
import segno
from PIL import Image

from app.qrcodes.decoration import print_colour, screen_colour
from app.qrcodes.documents import write_eps, write_pdf
from app.qrcodes.encoder import Symbol, encode
from app.qrcodes.raster import write_png, write_svg
from app.qrcodes.rendering import render_images
from app.qrcodes.style import Style
from app.qrcodes.symbol import plan_encoding
from tests.decoding import decode_png, decode_svg

SYMBOLS = {
    "version 1": ("HELLO 42", False),
    "version 4": ("https://example.com/spring-sale?utm_source=poster", False),
    "version 10": ("Grüße ✓ " * 20, False),
    "micro M2": ("HELLO 42", True),
    "micro M1": ("123", True),
}
# (dark, light) as render_images passes them: light None is transparent.
COLOURS = [
    ("#000000", "#ffffff"),
    ("#000000", None),
    ("#1a237e", None),
    ("#1a237ecc", "#ffff0080"),
    ("#00000080", "#ffffff"),
    ("#000000", "#ffffff00"),
    ("#000000ff", "#ffffffff"),
    ("#c62828", "#fffde7"),
    ("#ff0000", "#00ff00"),
]
SIZES = [(1, 0), (10, 4), (3, 2), (7, 1)]
# As render_images passes them to PDF and EPS: opaque, light None where not drawn.
PRINT_COLOURS = [("#000000", "#ffffff"), ("#000000", None), ("#1a237e", None), ("#c62828", "#fffde7"),
                 ("#ff0000", "#010101"), ("#ffffff", "#000000")]


def _symbol(name: str) -> tuple[Symbol, segno.QRCode]:
    content, micro = SYMBOLS[name]
    plan = plan_encoding(content)
    symbol = encode(content, "M" if not micro else "L", plan.mode, plan.encoding, micro)
    return symbol, symbol.qrcode()


def _segno(qr: segno.QRCode, kind: str, scale: int, border: int, dark: str, light: str | None) -> bytes:
    out = io.BytesIO()
    qr.save(out, kind=kind, scale=scale, border=border, dark=dark, light=light)
    return out.getvalue()


def _decoded(png: bytes) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(io.BytesIO(png)) as image:
        return image.mode, image.size, image.convert("RGBA").tobytes()


@pytest.mark.parametrize("name", SYMBOLS)
@pytest.mark.parametrize(("dark", "light"), COLOURS)
def test_svg_is_segnos_svg(name: str, dark: str, light: str | None) -> None:
    symbol, qr = _symbol(name)
    for scale, border in SIZES:
        assert write_svg(symbol.matrix, scale, border, dark, light) == _segno(qr, "svg", scale, border, dark, light)


@pytest.mark.parametrize("name", SYMBOLS)
@pytest.mark.parametrize(("dark", "light"), COLOURS)
def test_png_is_segnos_png(name: str, dark: str, light: str | None) -> None:
    symbol, qr = _symbol(name)
    for scale, border in SIZES:
        reference = _segno(qr, "png", scale, border, dark, light)
        # At segno's compression level the bytes are segno's; at the default level its pixels and palette.
        assert write_png(symbol.matrix, scale, border, dark, light, compression=9) == reference
        fast = write_png(symbol.matrix, scale, border, dark, light)
        assert _decoded(fast) == _decoded(reference)
        assert _chunks(fast) - {b"IDAT"} == _chunks(reference) - {b"IDAT"}


@pytest.mark.parametrize("name", SYMBOLS)
@pytest.mark.parametrize(("dark", "light"), PRINT_COLOURS)
def test_pdf_and_eps_are_segnos(name: str, dark: str, light: str | None) -> None:
    symbol, qr = _symbol(name)
    for scale, border in SIZES:
        pdf = write_pdf(symbol.matrix, scale, border, dark, light)
        assert _undated(pdf) == _undated(_segno(qr, "pdf", scale, border, dark, light))
        eps = io.StringIO()
        qr.save(eps, kind="eps", scale=scale, border=border, dark=dark, light=light)
        assert _undated(write_eps(symbol.matrix, scale, border, dark, light)) == _undated(eps.getvalue().encode())


def _chunks(png: bytes) -> set[bytes]:
    """Every chunk but IDAT, whole (type and data)."""
    chunks, offset = set(), 8
    while offset < len(png):
        length = int.from_bytes(png[offset : offset + 4], "big")
        kind = png[offset + 4 : offset + 8]
        chunks.add(kind if kind == b"IDAT" else png[offset + 4 : offset + 8 + length])
        offset += 12 + length
    return chunks


CONTENT = "https://example.com/spring-sale?utm_source=poster&utm_medium=print"


@pytest.mark.parametrize(
    "style",
    [Style(), Style(error="H", scale=3, border=1), Style(dark="#1a237ecc", light="transparent"), Style(micro=True)],
    ids=["default", "small", "translucent", "micro"],
)
def test_render_images_draws_segnos_pdf_and_eps_and_reads_back(style: Style) -> None:
    content = "HELLO 42" if style.micro else CONTENT
    images = render_images(content, style)
    assert decode_png(images["png"]) == [content]
    assert decode_svg(images["svg"]) == [content]
    plan = plan_encoding(content)
    make = segno.make_micro if style.micro else segno.make_qr
    qr = make(content, error=style.error, mode=plan.mode, encoding=plan.encoding)
    opaque = {"scale": style.scale, "border": style.border, "dark": print_colour(style.dark, dark=True),
              "light": print_colour(style.light)}
    pdf = io.BytesIO()
    qr.save(pdf, kind="pdf", **opaque)
    eps = io.StringIO()
    qr.save(eps, kind="eps", **opaque)
    assert _undated(images["pdf"]) == _undated(pdf.getvalue())
    assert _undated(images["eps"]) == _undated(eps.getvalue().encode("ascii"))
    light = screen_colour(style.light)
    screen = {"scale": style.scale, "border": style.border, "dark": style.dark, "light": light}
    assert images["svg"] == _segno(qr, "svg", **screen)
    assert _decoded(images["png"]) == _decoded(_segno(qr, "png", **screen))


def _undated(document: bytes) -> bytes:
    """PDF and EPS carry their creation time."""
    document = re.sub(rb"/CreationDate\(D:[^)]*\)", b"", document)
    return re.sub(rb"%%CreationDate:[^\n]*\n", b"", document)
