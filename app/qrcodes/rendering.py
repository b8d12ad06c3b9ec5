"""Drawing a symbol with segno. Imported by workers only: the gateway never renders."""

from __future__ import annotations

import io

import segno

from app.qrcodes.style import Style
from app.qrcodes.symbol import plan_encoding


def make_symbol(content: str, style: Style) -> segno.QRCode:
    plan = plan_encoding(content)
    make = segno.make_micro if style.micro else segno.make_qr
    return make(content, error=style.error, mode=plan.mode, encoding=plan.encoding)


def _colour(value: str) -> str | None:
    return None if value == "transparent" else value


def _opaque(colour: str | None) -> str | None:
    """PDF and EPS have no alpha channel (segno refuses #RRGGBBAA there): drop it, and treat a fully
    transparent background as none."""
    if colour is None or len(colour) == 7:
        return colour
    return None if colour.endswith("00") else colour[:7]


def render_images(content: str, style: Style) -> dict[str, bytes]:
    """Every format from one matrix: building the matrix is half the cost of a PNG."""
    qr = make_symbol(content, style)
    common = {"scale": style.scale, "border": style.border, "dark": style.dark, "light": _colour(style.light)}
    opaque = {**common, "dark": style.dark[:7], "light": _opaque(common["light"])}
    images: dict[str, bytes] = {}
    for fmt, options in (("png", common), ("svg", common), ("pdf", opaque)):
        out = io.BytesIO()
        qr.save(out, kind=fmt, **options)
        images[fmt] = out.getvalue()
    text = io.StringIO()  # segno writes EPS as text
    qr.save(text, kind="eps", **opaque)
    images["eps"] = text.getvalue().encode("ascii")
    return images
