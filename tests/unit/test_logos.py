"""Logos: which uploads are accepted, where the logo goes in each format, and the read-back that refuses a
logo too large to scan."""

from __future__ import annotations

import base64
import io
import uuid
from typing import Any

import pytest
from PIL import Image, ImageDraw
from pydantic import ValidationError

from app.qrcodes.decoration import LogoSource, logo_box
from app.qrcodes.logo_files import MAX_LOGO_BYTES, LogoRefused, inspect, rasterise
from app.qrcodes.readback import reads_back
from app.qrcodes.rendering import make_symbol, render_images
from app.qrcodes.style import LOGO_SIZE_DEFAULT, Style
from tests.decoding import decode_png, decode_svg
from tests.unit.test_module_colours import _pdf_content

CONTENT = "https://example.com/spring-sale?utm_source=poster"
LOGO_RED = (211, 47, 47, 255)


def png_logo(size: tuple[int, int] = (120, 80), colour: tuple[int, ...] = LOGO_RED) -> bytes:
    """A filled ellipse on a transparent canvas."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse([0, 0, size[0] - 1, size[1] - 1], fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


SVG_LOGO = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 100 100">'
    b'<defs><linearGradient id="g"><stop offset="0" stop-color="#1565c0"/><stop offset="1" stop-color="#0d47a1"/>'
    b'</linearGradient></defs><circle cx="50" cy="50" r="45" fill="url(#g)"/>'
    b'<use xlink:href="#g"/><style>circle { stroke: #fff }</style></svg>'
)


def _svg(body: str, root: str = 'viewBox="0 0 10 10"') -> bytes:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" {root}>'
        f"{body}</svg>"
    ).encode()


_RECT = '<rect width="10" height="10" fill="#000"/>'


# --- what is accepted --------------------------------------------------------------------------------------


def test_png_and_svg_logos_are_measured() -> None:
    assert inspect("image/png", png_logo((120, 80))).width == 120
    assert (inspect("image/svg+xml", SVG_LOGO).width, inspect("image/svg+xml", SVG_LOGO).height) == (100, 100)
    # Absolute units, as design tools write them, measured in CSS pixels (96 per inch).
    sized = inspect("image/svg+xml", _svg(_RECT, 'width="2in" height="48"'))
    assert (sized.width, sized.height) == (192, 48)
    in_mm = _svg(_RECT, 'width="20mm" height="10mm" viewBox="0 0 20 10"')
    assert rasterise("image/svg+xml", in_mm, 64).size == (64, 32)


def _png_bomb_header() -> bytes:
    """A valid PNG of 5000×5000 one-bit pixels: tiny on disk, 25 megapixels decoded."""
    out = io.BytesIO()
    Image.new("1", (5000, 5000)).save(out, format="PNG")
    return out.getvalue()


def _embedded(image: bytes, kind: str = "png") -> str:
    return f'<image width="10" height="10" xlink:href="data:image/{kind};base64,{base64.b64encode(image).decode()}"/>'


@pytest.mark.parametrize(
    ("media_type", "data", "message"),
    [
        ("image/png", b"", "empty"),
        ("image/png", b"GIF89a not a png", "not a readable PNG"),
        ("image/png", SVG_LOGO, "not a readable PNG"),
        ("image/png", png_logo()[:-40], "not a readable PNG"),  # truncated
        ("image/png", _png_bomb_header(), "at most 4096"),
        ("image/png", png_logo(colour=(255, 0, 0, 0)), "fully transparent"),
        ("image/png", b"\x89PNG" + b"0" * MAX_LOGO_BYTES, "the limit is"),
        ("image/svg+xml", png_logo(), "UTF-8"),
        ("image/svg+xml", b"<svg", "not a well-formed SVG"),
        ("image/svg+xml", b"<html><body/></html>", "not an SVG"),
        ("image/svg+xml", _svg(_RECT + "<script>alert(1)</script>"), "<script>"),
        ("image/svg+xml", _svg(_RECT + "<foreignObject><p>x</p></foreignObject>"), "<foreignObject>"),
        ("image/svg+xml", _svg(_RECT.replace("/>", ' onclick="alert(1)"/>')), "event handler"),
        ("image/svg+xml", _svg(_RECT + '<image xlink:href="https://evil.example/x.png"/>'), "external resource"),
        ("image/svg+xml", _svg(_RECT + '<use href="other.svg#x"/>'), "external resource"),
        ("image/svg+xml", _svg(_RECT.replace('fill="#000"', 'fill="url(https://evil.example/#p)"')), "url()"),
        ("image/svg+xml", _svg(_RECT + "<style>@import url(#x);</style>"), "imports"),
        ("image/svg+xml", _svg(_RECT + '<set attributeName="href" to="javascript:x"/>'), "animates"),
        (
            "image/svg+xml",
            b'<?xml-stylesheet href="https://evil.example/a.css"?>' + _svg(_RECT),
            "processing instruction",
        ),
        ("image/svg+xml", b'<!DOCTYPE svg [<!ENTITY a "aaaa">]>' + _svg("&a;" + _RECT), "DTDForbidden"),
        ("image/svg+xml", _svg(_RECT, root=""), "viewBox"),
        ("image/svg+xml", _svg(_RECT, root='width="100000" height="10"'), "between 1 and 4096"),
        ("image/svg+xml", _svg('<rect width="10" height="10" fill="none"/>'), "draws nothing"),
        ("image/svg+xml", _svg(_embedded(_png_bomb_header())), "at most 4096"),
        ("image/svg+xml", _svg(_embedded(b"junk")), "cannot be read"),
    ],
)
def test_bad_uploads_are_refused_with_a_reason(media_type: str, data: bytes, message: str) -> None:
    with pytest.raises(LogoRefused, match=message.replace("(", r"\(").replace(")", r"\)")):
        inspect(media_type, data)


def test_an_svg_may_embed_a_raster_image() -> None:
    assert inspect("image/svg+xml", _svg(_embedded(png_logo()))).width == 10


def test_rasterise_fits_without_enlarging_a_png() -> None:
    assert rasterise("image/png", png_logo((120, 80)), 60).size == (60, 40)
    assert rasterise("image/png", png_logo((120, 80)), 500).size == (120, 80)
    assert rasterise("image/svg+xml", SVG_LOGO, 64).size == (64, 64)


# --- style -------------------------------------------------------------------------------------------------


def test_a_logo_forces_level_h_and_a_default_size() -> None:
    style = Style(logo=uuid.uuid4(), error="L")
    assert (style.error, style.logo_size, style.decorated) == ("H", LOGO_SIZE_DEFAULT, True)
    # Idempotent: what the worker re-reads from storage validates to the same style.
    assert Style.model_validate(style.model_dump(mode="json", exclude_none=True)) == style


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"logo_size": 0.2}, "logo_size"),  # no logo
        ({"logo": str(uuid.uuid4()), "logo_size": 0.51}, "logo_size"),
        ({"logo": str(uuid.uuid4()), "logo_size": 0.01}, "logo_size"),
        ({"logo": str(uuid.uuid4()), "micro": True, "error": "L"}, "micro"),
        ({"logo": "logo.png"}, "logo"),
    ],
)
def test_logo_styles_refused(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Style(**fields)
    assert {error["loc"] for error in exc.value.errors()} == {(field,)}


# --- drawing -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("symbol", "size", "expected"), [(21, 0.25, 5), (33, 0.25, 7), (33, 0.5, 15), (177, 0.2, 35)])
def test_logo_box_is_odd_and_centred(symbol: int, size: float, expected: int) -> None:
    box = logo_box(symbol, 4, size)
    assert box.size == expected
    assert box.start - 4 == 4 + symbol - (box.start + box.size)  # equal margins on both sides


@pytest.mark.parametrize("logo", [LogoSource("image/png", png_logo()), LogoSource("image/svg+xml", SVG_LOGO)],
                         ids=["png", "svg"])
@pytest.mark.parametrize("light", ["#ffffff", "transparent"])
def test_a_logo_is_drawn_in_the_centre_and_the_code_reads_back(logo: LogoSource, light: str) -> None:
    style = Style(logo=uuid.uuid4(), light=light, scale=8, finder_dark="#1a237e")
    images = render_images(CONTENT, style, logo=logo)
    assert set(images) == {"png", "svg", "pdf"}  # no EPS for a logo
    assert reads_back(images["png"], CONTENT)
    assert decode_png(images["png"]) == [CONTENT] and decode_svg(images["svg"]) == [CONTENT]

    qr = make_symbol(CONTENT, style)
    side = qr.symbol_size(scale=1, border=style.border)[0]
    box = logo_box(side - 2 * style.border, style.border, style.logo_size)
    with Image.open(io.BytesIO(images["png"])) as image:
        rgba = image.convert("RGBA")
    centre = rgba.getpixel((side * 8 // 2, side * 8 // 2))
    assert centre[3] == 255 and centre[:3] != (0, 0, 0) and centre[:3] != (255, 255, 255)  # the logo's colour
    corner = rgba.getpixel((box.start * 8 + 1, box.start * 8 + 1))  # inside the box, outside the logo
    assert corner == ((0, 0, 0, 0) if light == "transparent" else (255, 255, 255, 255))

    svg = images["svg"].decode()
    assert 'clip-path="url(#qrflow-logo-hole)"' in svg
    assert f'xlink:href="data:{logo.media_type};base64,{base64.b64encode(logo.data).decode()}"' in svg
    assert b"/Subtype /Image" in images["pdf"] and b"/SMask 6 0 R" in images["pdf"]
    assert "/Logo Do" in _pdf_content(images["pdf"])


def test_a_logo_too_large_to_read_fails_the_read_back() -> None:
    # Half the width of a version 18 symbol: the box hides more codewords than level H restores.
    content = "x" * 300
    style = Style(logo=uuid.uuid4(), logo_size=0.5)
    png = render_images(content, style, logo=LogoSource("image/png", png_logo()))["png"]
    assert not reads_back(png, content)


def test_a_small_scale_logo_code_still_renders() -> None:
    style = Style(logo=uuid.uuid4(), scale=1, border=0)
    images = render_images(CONTENT, style, logo=LogoSource("image/svg+xml", SVG_LOGO))
    assert set(images) == {"png", "svg", "pdf"}
