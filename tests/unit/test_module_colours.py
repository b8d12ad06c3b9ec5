"""Module colours (finder, alignment, data, quiet zone): what Style accepts, and that every format draws
each kind of module in its colour and still reads back."""

from __future__ import annotations

import io
import re
import zlib
from typing import Any

import pytest
from PIL import Image
from pydantic import ValidationError
from segno import consts

from app.qrcodes.readback import reads_back
from app.qrcodes.rendering import make_symbol, render_images
from app.qrcodes.style import Style
from tests.decoding import decode_png, decode_svg

# Long enough for a version with alignment patterns (version 2 and up).
CONTENT = "https://example.com/spring-sale?utm_source=poster&utm_medium=print"
COLOURS = {
    "finder_dark": "#c62828",
    "finder_light": "#fffde7",
    "alignment_dark": "#2e7d32",
    "alignment_light": "#e8f5e9",
    "data_dark": "#1a237e",
    "data_light": "#e3f2fd",
    "quiet_zone": "#fff8e1",
}


def _loc(exc: pytest.ExceptionInfo[ValidationError]) -> set[tuple[Any, ...]]:
    return {error["loc"] for error in exc.value.errors()}


# --- what Style accepts ------------------------------------------------------------------------------------


def test_a_style_stored_before_module_colours_still_loads() -> None:
    stored = {"error": "M", "scale": 10, "border": 4, "dark": "#000000", "light": "#ffffff", "micro": False}
    style = Style.model_validate(stored)
    assert not style.decorated and style.finder_dark is None and style.logo is None
    assert style.model_dump(exclude_none=True) == stored


def test_module_colours_are_normalised_and_make_a_style_decorated() -> None:
    style = Style(finder_dark="#C62828", quiet_zone="TRANSPARENT".lower(), data_light="#E3F2FD80")
    assert (style.finder_dark, style.quiet_zone, style.data_light) == ("#c62828", "transparent", "#e3f2fd80")
    assert style.decorated


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"finder_dark": "transparent"}, "finder_dark"),  # dark modules are always drawn
        ({"data_dark": "red"}, "data_dark"),
        ({"alignment_light": "#fff"}, "alignment_light"),
        ({"finder_dark": "#ffffff"}, "finder_dark"),  # the same as the light default
        ({"data_dark": "#dddddd"}, "data_dark"),  # 1.4:1 on white
        ({"data_light": "#333333"}, "data_light"),  # light modules darker than dark ones' contrast
        ({"finder_dark": "#ffffff", "finder_light": "#000000"}, "finder_dark"),  # inverted
        ({"quiet_zone": "#111111"}, "quiet_zone"),  # against the finders' dark
    ],
)
def test_module_colours_refused(fields: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Style(**fields)
    assert _loc(exc) == {(field,)}


def test_low_contrast_message_says_how_much() -> None:
    with pytest.raises(ValidationError) as exc:
        Style(data_dark="#aaaaaa")
    assert "contrast of 2.3:1" in str(exc.value) and "at least 3:1" in str(exc.value)


def test_translucent_or_transparent_pairs_are_left_to_the_read_back() -> None:
    # What shows through is unknown: no contrast is computed, only equal colours are refused.
    assert Style(data_dark="#aaaaaa80").data_dark == "#aaaaaa80"
    assert Style(light="transparent", finder_dark="#bbbbbb").finder_dark == "#bbbbbb"


# --- drawing -----------------------------------------------------------------------------------------------


def _module_of(content: str, style: Style, kind: int) -> tuple[int, int]:
    """(column, row), border included, of the first module of a kind."""
    for y, row in enumerate(make_symbol(content, style).matrix_iter(scale=1, border=style.border, verbose=True)):
        if kind in row:
            return row.index(kind), y
    raise AssertionError(f"no module of kind {kind}")


def _rgba(colour: str) -> tuple[int, ...]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5)) + (int(colour[7:9], 16) if len(colour) == 9 else 255,)


_KINDS = {
    "finder_dark": consts.TYPE_FINDER_PATTERN_DARK,
    "finder_light": consts.TYPE_FINDER_PATTERN_LIGHT,
    "alignment_dark": consts.TYPE_ALIGNMENT_PATTERN_DARK,
    "alignment_light": consts.TYPE_ALIGNMENT_PATTERN_LIGHT,
    "data_dark": consts.TYPE_DATA_DARK,
    "data_light": consts.TYPE_DATA_LIGHT,
    "quiet_zone": consts.TYPE_QUIET_ZONE,
}


@pytest.mark.parametrize("field", COLOURS)
def test_png_pixels_have_each_modules_colour(field: str) -> None:
    style = Style(scale=4, **COLOURS)
    png = render_images(CONTENT, style)["png"]
    x, y = _module_of(CONTENT, style, _KINDS[field])
    with Image.open(io.BytesIO(png)) as image:
        pixel = image.convert("RGBA").getpixel((x * 4 + 2, y * 4 + 2))
    assert pixel == _rgba(COLOURS[field])


def test_every_format_carries_the_colours_and_reads_back() -> None:
    style = Style(**COLOURS)
    images = render_images(CONTENT, style)
    assert set(images) == {"png", "svg", "pdf", "eps"}
    assert decode_png(images["png"]) == [CONTENT]
    assert decode_svg(images["svg"]) == [CONTENT]
    assert reads_back(images["png"], CONTENT)
    svg = images["svg"].decode()
    for colour in ("#c62828", "#2e7d32", "#1a237e"):
        assert colour in svg
    pdf_ops = _pdf_content(images["pdf"])
    eps = images["eps"].decode("ascii")
    for colour in COLOURS.values():
        rgb = " ".join(f"{int(colour[i:i + 2], 16) / 255:.4g}" for i in (1, 3, 5))
        assert f"{rgb} rg" in pdf_ops
        assert f"{rgb} setrgbcolor" in eps
    assert eps.startswith("%!PS-Adobe-3.0 EPSF-3.0") and images["pdf"].startswith(b"%PDF-1.4")


def _pdf_content(pdf: bytes) -> str:
    stream = re.search(rb"/Filter /FlateDecode >>\nstream\n(.*?)\nendstream", pdf, re.DOTALL)
    assert stream is not None
    return zlib.decompress(stream.group(1)).decode("ascii")


def test_transparent_background_with_module_colours() -> None:
    style = Style(light="transparent", finder_dark="#c62828", data_dark="#1a237e", scale=4)
    images = render_images(CONTENT, style)
    x, y = _module_of(CONTENT, style, consts.TYPE_DATA_LIGHT)
    with Image.open(io.BytesIO(images["png"])) as image:
        rgba = image.convert("RGBA")
    assert rgba.getpixel((x * 4 + 2, y * 4 + 2))[3] == 0
    assert rgba.getpixel((0, 0))[3] == 0  # the quiet zone too
    assert decode_png(images["png"]) == [CONTENT] and decode_svg(images["svg"]) == [CONTENT]
    # PDF and EPS draw no background at all: only the dark modules' two colours.
    assert set(re.findall(r"([\d.]+ [\d.]+ [\d.]+) rg", _pdf_content(images["pdf"]))) == {
        "0.7765 0.1569 0.1569", "0.102 0.1373 0.4941", "0 0 0"
    }


def test_translucent_module_colours_are_opaque_in_print() -> None:
    images = render_images(CONTENT, Style(data_dark="#1a237e80", quiet_zone="#ffffff00"))
    with Image.open(io.BytesIO(images["png"])) as image:
        assert image.convert("RGBA").getpixel((0, 0))[3] == 0
    ops = _pdf_content(images["pdf"])
    assert "0.102 0.1373 0.4941 rg" in ops  # the alpha is dropped, the colour drawn
    assert ops.count(" rg") == 3  # dark, data dark, light: the transparent quiet zone is not drawn


def test_unreadable_colours_fail_the_read_back() -> None:
    # Translucent colours pass Style's checks (what shows through is unknown); on paper this is unreadable.
    style = Style(data_dark="#00000008", finder_dark="#00000008", alignment_dark="#00000008", dark="#00000008")
    assert not reads_back(render_images(CONTENT, style)["png"], CONTENT)
