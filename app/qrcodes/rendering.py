"""Drawing a symbol. Imported by workers only: the gateway never renders.

The module matrix comes from encoder.py (segno's matrix, bit for bit, faster); a plain code's PNG and SVG
from raster.py, its PDF and EPS from documents.py (segno's images, faster). Module colours and logos go
through segno's own writers and decoration.py, given the same matrix as a segno.QRCode.
"""

from __future__ import annotations

import segno

from app.qrcodes.decoration import (
    LogoSource,
    print_colour,
    render_decorated,
    screen_colour,
)
from app.qrcodes.documents import write_eps, write_pdf
from app.qrcodes.encoder import Symbol, encode
from app.qrcodes.raster import write_png, write_svg
from app.qrcodes.style import Style
from app.qrcodes.symbol import FREE, SymbolRules, plan_encoding


def encode_symbol(content: str, style: Style, rules: SymbolRules = FREE) -> Symbol:
    plan = plan_encoding(content)
    # A kind whose standard fixes the level (EPC: M) gets exactly that level: segno must not raise it.
    symbol = encode(
        content,
        rules.error or style.error,
        plan.mode,
        plan.encoding,
        micro=style.micro,
        boost_error=rules.boost_error,
    )
    if not symbol.is_micro and symbol.version > rules.max_version:  # the capacity check makes this unreachable
        raise ValueError(f"the content needs a version {symbol.version} symbol; at most {rules.max_version} is allowed")
    return symbol


def make_symbol(content: str, style: Style, rules: SymbolRules = FREE) -> segno.QRCode:
    return encode_symbol(content, style, rules).qrcode()


def render_images(
    content: str, style: Style, rules: SymbolRules = FREE, logo: LogoSource | None = None
) -> dict[str, bytes]:
    """Every format from one matrix. A code with a logo has no EPS (see decoration.py)."""
    symbol = encode_symbol(content, style, rules)
    if style.decorated:
        return render_decorated(symbol.qrcode(), style, logo)
    assert style.border is not None  # Style's validator sets it
    light = screen_colour(style.light)
    images = {
        "png": write_png(symbol.matrix, style.scale, style.border, style.dark, light),
        "svg": write_svg(symbol.matrix, style.scale, style.border, style.dark, light),
    }
    print_options = (style.scale, style.border, print_colour(style.dark, dark=True), print_colour(style.light))
    images["pdf"] = write_pdf(symbol.matrix, *print_options)
    images["eps"] = write_eps(symbol.matrix, *print_options)
    return images
