"""Decorated codes: module colours and a logo. Workers only (segno, Pillow, resvg).

PNG and SVG come from segno, which colours each kind of module itself; the logo is then composited in:
into the PNG's pixels, and into the SVG as an embedded <image>, with the modules under its box clipped
away. PDF and EPS come from vector.py, from the same modules and colours (EPS gets no logo: a code with
a logo has no EPS image). The logo's box is a square of whole modules in the centre, cleared to the light
colour of the data modules (transparent stays transparent), and the logo sits inside it, half a module
from its edges, its aspect ratio kept.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import segno
from PIL import Image
from segno import consts

from app.qrcodes.logo_files import rasterise
from app.qrcodes.style import MODULE_COLOURS, Style
from app.qrcodes.vector import Placement, colour_runs, write_eps, write_pdf

# The logo in a PDF: enough pixels for print at any size a logo box reaches on paper.
PDF_LOGO_SIDE = 512

# Each kind of module → the style field that colours it (None: the style's dark or light), as segno's
# own colour map resolves them.
_DARK = {
    consts.TYPE_FINDER_PATTERN_DARK: "finder_dark",
    consts.TYPE_ALIGNMENT_PATTERN_DARK: "alignment_dark",
    consts.TYPE_DATA_DARK: "data_dark",
    consts.TYPE_VERSION_DARK: None,
    consts.TYPE_TIMING_DARK: None,
    consts.TYPE_FORMAT_DARK: None,
    consts.TYPE_DARKMODULE: None,
}
_LIGHT = {
    consts.TYPE_FINDER_PATTERN_LIGHT: "finder_light",
    consts.TYPE_ALIGNMENT_PATTERN_LIGHT: "alignment_light",
    consts.TYPE_DATA_LIGHT: "data_light",
    consts.TYPE_VERSION_LIGHT: None,
    consts.TYPE_TIMING_LIGHT: None,
    consts.TYPE_FORMAT_LIGHT: None,
    consts.TYPE_SEPARATOR: None,
    consts.TYPE_QUIET_ZONE: "quiet_zone",
}


@dataclass(frozen=True)
class LogoSource:
    media_type: str  # image/png or image/svg+xml
    data: bytes


@dataclass(frozen=True)
class LogoBox:
    """A square of whole modules, counted from the image's edge (quiet zone included)."""

    start: int
    size: int

    @property
    def placement(self) -> Placement:
        inset = 0.5 if self.size >= 3 else 0.0
        side = self.size - 2 * inset
        return Placement(self.start + inset, self.start + inset, side, side)

    def contains(self, x: int, y: int) -> bool:
        return self.start <= x < self.start + self.size and self.start <= y < self.start + self.size


def logo_box(symbol_modules: int, border: int, logo_size: float) -> LogoBox:
    # Odd, like every symbol's width, so the box sits exactly in the centre.
    size = int(symbol_modules * logo_size)
    size = max(1, size - 1 if size % 2 == 0 else size)
    return LogoBox(border + (symbol_modules - size) // 2, size)


def screen_colour(value: str) -> str | None:
    """PNG and SVG: alpha as given; transparent is no colour."""
    return None if value == "transparent" else value


def print_colour(value: str, *, dark: bool = False) -> str | None:
    """PDF and EPS have no alpha channel (segno refuses #RRGGBBAA there): drop it, and treat a fully
    transparent light colour as none. A dark colour is always drawn: without it there is no code."""
    if not dark and (value == "transparent" or (len(value) == 9 and value.endswith("00"))):
        return None
    return value[:7]


def _resolved(style: Style, field: str | None, default: str) -> str:
    return (getattr(style, field) if field else None) or default


def render_decorated(qr: segno.QRCode, style: Style, logo: LogoSource | None) -> dict[str, bytes]:
    given = {name: screen_colour(getattr(style, name)) for name in (*MODULE_COLOURS, "quiet_zone")
             if getattr(style, name) is not None}
    options = {"scale": style.scale, "border": style.border, "dark": style.dark, "light": screen_colour(style.light)}
    images = {}
    for fmt in ("png", "svg"):
        out = io.BytesIO()
        qr.save(out, kind=fmt, **options, **given)
        images[fmt] = out.getvalue()

    modules = qr.symbol_size(scale=1, border=style.border)[0]
    box = logo_box(modules - 2 * style.border, style.border, style.logo_size or 0) if logo else None
    hole = _resolved(style, "data_light", style.light)  # the box's colour: what light data modules have
    palette = {kind: print_colour(_resolved(style, field, style.dark), dark=True) for kind, field in _DARK.items()}
    palette |= {kind: print_colour(_resolved(style, field, style.light)) for kind, field in _LIGHT.items()}
    rows = [
        [print_colour(hole) if box and box.contains(x, y) else palette[kind] for x, kind in enumerate(row)]
        for y, row in enumerate(qr.matrix_iter(scale=1, border=style.border, verbose=True))
    ]
    runs = colour_runs(rows)
    if logo is None or box is None:
        images["pdf"] = write_pdf(runs, modules, style.scale)
        images["eps"] = write_eps(runs, modules, style.scale)
        return images
    pdf_logo = rasterise(logo.media_type, logo.data, PDF_LOGO_SIDE)
    images["pdf"] = write_pdf(runs, modules, style.scale, pdf_logo, _fitted(box.placement, pdf_logo.size))
    images["png"] = _compose_png(images["png"], style.scale, box, screen_colour(hole), logo)
    images["svg"] = _compose_svg(images["svg"], style.scale, modules, box, screen_colour(hole), logo)
    return images


def _fitted(area: Placement, size: tuple[int, int]) -> Placement:
    """The largest rectangle of the image's aspect ratio inside the area, centred in it."""
    width, height = size
    factor = min(area.width / width, area.height / height)
    fitted_w, fitted_h = width * factor, height * factor
    return Placement(area.x + (area.width - fitted_w) / 2, area.y + (area.height - fitted_h) / 2, fitted_w, fitted_h)


def _rgba(colour: str | None) -> tuple[int, int, int, int]:
    if colour is None:
        return (0, 0, 0, 0)
    alpha = int(colour[7:9], 16) if len(colour) == 9 else 255
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16), alpha)


def _compose_png(png: bytes, scale: int, box: LogoBox, hole: str | None, logo: LogoSource) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        canvas = image.convert("RGBA")
    first, last = box.start * scale, (box.start + box.size) * scale
    canvas.paste(_rgba(hole), (first, first, last, last))  # pasting a colour replaces, alpha included
    area = box.placement
    side = max(1, round(area.width * scale))
    picture = rasterise(logo.media_type, logo.data, side)
    place = _fitted(Placement(area.x * scale, area.y * scale, side, side), picture.size)
    size = (max(1, round(place.width)), max(1, round(place.height)))
    if picture.size != size:
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    canvas.alpha_composite(picture, dest=(round(place.x), round(place.y)))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


def _compose_svg(svg: bytes, scale: int, modules: int, box: LogoBox, hole: str | None, logo: LogoSource) -> bytes:
    text = svg.decode("utf-8")
    open_end = text.index(">", text.index("<svg")) + 1
    close = text.rindex("</svg>")
    root = text[: open_end - 1]
    if "xmlns:xlink" not in root:
        root += ' xmlns:xlink="http://www.w3.org/1999/xlink"'
    side, first, width = modules * scale, box.start * scale, box.size * scale
    # Even-odd: the whole image minus the box, so no module shows under the logo, whatever its alpha.
    clip = (
        f'<defs><clipPath id="qrflow-logo-hole"><path clip-rule="evenodd" '
        f'd="M0 0H{side}V{side}H0ZM{first} {first}h{width}v{width}h-{width}Z"/></clipPath></defs>'
    )
    fill = ""
    if hole is not None:
        opacity = f' fill-opacity="{int(hole[7:9], 16) / 255:.3g}"' if len(hole) == 9 else ""
        fill = f'<rect x="{first}" y="{first}" width="{width}" height="{width}" fill="{hole[:7]}"{opacity}/>'
    area = box.placement
    # preserveAspectRatio's default (xMidYMid meet) fits and centres the logo in the area.
    image = (
        f'<image x="{area.x * scale:g}" y="{area.y * scale:g}" width="{area.width * scale:g}" '
        f'height="{area.height * scale:g}" xlink:href="data:{logo.media_type};base64,'
        f'{base64.b64encode(logo.data).decode("ascii")}"/>'
    )
    body = f'{root}>{clip}<g clip-path="url(#qrflow-logo-hole)">{text[open_end:close]}</g>{fill}{image}</svg>'
    return body.encode("utf-8")
