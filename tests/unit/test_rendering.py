"""Rendered images read back, with zxing-cpp, to exactly the content string."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from app.qrcodes.content import (
    EmailData,
    GeoData,
    PhoneData,
    SMSData,
    TextData,
    URLData,
    VCardData,
    WifiData,
)
from app.qrcodes.rendering import make_symbol, render_images
from app.qrcodes.style import Style
from app.qrcodes.symbol import plan_encoding
from tests.decoding import decode_png, decode_svg

FORMATS = {"png", "svg", "pdf", "eps"}

CONTENTS: dict[str, str] = {
    "url": URLData(url="https://example.com/spring-sale?utm_source=poster&utm_medium=print").content(),
    "text utf-8": TextData(text="Grüße ✓ 日本").content(),
    "text latin-1": TextData(text="Café crème").content(),
    "wifi": WifiData(ssid='Café "Guest"; 2F', password="espresso;42,\\x").content(),
    "vcard": VCardData(
        name="Zoë Ångström",
        phone="+46 8 123 456 78",
        email="zoe@example.com",
        org="Nordic Labs, AB",
        title="Chief; Scientist",
        url="https://example.com/zoe",
        address="Storgatan 1\n114 51 Stockholm",
    ).content(),
    "email": EmailData(to="ada@example.com", subject="Grüße & hello?", body="Line 1\nLine 2: 100%").content(),
    "sms": SMSData(number="+1 (555) 010-9999", text="Running late: 10 min ✓").content(),
    "phone": PhoneData(number="+44 20 7946 0000").content(),
    "geo": GeoData(lat=-33.8688, lng=151.2093).content(),
    "numeric": "0123456789012345678901234567890",
    "alphanumeric": "HTTPS://QR.EXAMPLE.COM/R/SPRING-SALE",
}


def _png_size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        return image.size


@pytest.mark.parametrize("content", CONTENTS.values(), ids=CONTENTS.keys())
def test_every_format_and_both_raster_paths_read_back(content: str) -> None:
    images = render_images(content, Style())
    assert set(images) == FORMATS
    assert decode_png(images["png"]) == [content]
    assert decode_svg(images["svg"]) == [content]
    assert images["pdf"].startswith(b"%PDF")
    assert images["eps"].startswith(b"%!PS")


@pytest.mark.parametrize(
    ("content", "mode"),
    [
        (CONTENTS["numeric"], "numeric"),
        (CONTENTS["alphanumeric"], "alphanumeric"),
        (CONTENTS["text latin-1"], "byte"),
        (CONTENTS["text utf-8"], "byte"),
    ],
)
def test_symbol_follows_the_encoding_plan(content: str, mode: str) -> None:
    assert plan_encoding(content).mode == mode
    assert make_symbol(content, Style()).mode == mode


@pytest.mark.parametrize("error", "LMQH")
def test_error_level_is_at_least_the_requested_one(error: str) -> None:
    # segno may raise the level when the same version has room for it; it never lowers it.
    symbol = make_symbol(CONTENTS["url"], Style(error=error))
    assert "LMQH".index(symbol.error) >= "LMQH".index(error)


@pytest.mark.parametrize("content", ["12345", "HELLO 42", "Café", "hi ✓"])
def test_micro_qr_code_reads_back(content: str) -> None:
    style = Style(micro=True)
    assert make_symbol(content, style).is_micro
    images = render_images(content, style)
    assert decode_png(images["png"]) == [content]
    assert decode_svg(images["svg"]) == [content]



@pytest.mark.parametrize(
    ("dark", "light"),
    [
        ("#1a237e", "transparent"),
        ("#000000ff", "#ffffffff"),
        ("#00000080", "#ffffff"),
        ("#000000", "#ffffff00"),
        ("#1a237ecc", "#ffff0080"),
    ],
)
def test_translucent_colours_read_back(dark: str, light: str) -> None:
    content = CONTENTS["url"]
    images = render_images(content, Style(dark=dark, light=light))
    assert set(images) == FORMATS
    assert decode_png(images["png"]) == [content]
    assert decode_svg(images["svg"]) == [content]


def test_transparent_background_is_transparent() -> None:
    png = render_images(CONTENTS["url"], Style(light="transparent"))["png"]
    with Image.open(io.BytesIO(png)) as image:
        smallest_alpha, largest_alpha = image.convert("RGBA").getextrema()[3]
    assert (smallest_alpha, largest_alpha) == (0, 255)


@pytest.mark.parametrize(("content", "micro"), [(CONTENTS["url"], False), ("HELLO 42", True)])
def test_no_quiet_zone_still_reads_back(content: str, micro: bool) -> None:
    images = render_images(content, Style(border=0, micro=micro))
    assert decode_png(images["png"]) == [content]
    assert decode_svg(images["svg"]) == [content]


@pytest.mark.parametrize(("micro", "border"), [(False, None), (False, 0), (False, 7), (True, None), (True, 1)])
@pytest.mark.parametrize("scale", [1, 3, 10])
def test_png_size_is_modules_plus_quiet_zone_times_scale(micro: bool, border: int | None, scale: int) -> None:
    content = "HELLO 42"
    style = Style(micro=micro, border=border, scale=scale)
    modules = make_symbol(content, style).symbol_size(scale=1, border=0)[0]
    side = (modules + 2 * style.border) * scale
    assert _png_size(render_images(content, style)["png"]) == (side, side)


def test_png_size_is_proportional_to_scale() -> None:
    sizes = {scale: _png_size(render_images(CONTENTS["url"], Style(scale=scale))["png"]) for scale in (2, 6)}
    assert sizes[6] == (3 * sizes[2][0], 3 * sizes[2][1])


def test_smallest_scale_svg_reads_back() -> None:
    # One unit per module: decode_svg has to enlarge it before zxing-cpp can read it.
    content = CONTENTS["text utf-8"]
    assert decode_svg(render_images(content, Style(scale=1))["svg"]) == [content]
