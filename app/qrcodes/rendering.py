"""Drawing a symbol with segno. Imported by workers only: the gateway never renders."""

from __future__ import annotations

import io

import segno

from app.qrcodes.decoration import (
    LogoSource,
    print_colour,
    render_decorated,
    screen_colour,
)
from app.qrcodes.style import Style
from app.qrcodes.symbol import FREE, SymbolRules, plan_encoding


def make_symbol(content: str, style: Style, rules: SymbolRules = FREE) -> segno.QRCode:
    plan = plan_encoding(content)
    make = segno.make_micro if style.micro else segno.make_qr
    # A kind whose standard fixes the level (EPC: M) gets exactly that level: segno must not raise it.
    qr = make(
        content,
        error=rules.error or style.error,
        mode=plan.mode,
        encoding=plan.encoding,
        boost_error=rules.boost_error,
    )
    if not qr.is_micro and qr.version > rules.max_version:  # the capacity check makes this unreachable
        raise ValueError(f"the content needs a version {qr.version} symbol; at most {rules.max_version} is allowed")
    return qr


def render_images(
    content: str, style: Style, rules: SymbolRules = FREE, logo: LogoSource | None = None
) -> dict[str, bytes]:
    """Every format from one matrix: building the matrix is half the cost of a PNG. A code with a logo
    has no EPS (see decoration.py)."""
    qr = make_symbol(content, style, rules)
    if style.decorated:
        return render_decorated(qr, style, logo)
    screen = {"scale": style.scale, "border": style.border, "dark": style.dark, "light": screen_colour(style.light)}
    opaque = {**screen, "dark": print_colour(style.dark, dark=True), "light": print_colour(style.light)}
    images: dict[str, bytes] = {}
    for fmt, options in (("png", screen), ("svg", screen), ("pdf", opaque)):
        out = io.BytesIO()
        qr.save(out, kind=fmt, **options)
        images[fmt] = out.getvalue()
    text = io.StringIO()  # segno writes EPS as text
    qr.save(text, kind="eps", **opaque)
    images["eps"] = text.getvalue().encode("ascii")
    return images
