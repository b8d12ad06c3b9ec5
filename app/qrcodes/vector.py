"""PDF and EPS for decorated codes (module colours, a logo), which segno's own PDF and EPS writers cannot
draw: they know one dark and one light colour. Plain codes get segno's drawing from documents.py.

Both formats get the same drawing: each row of modules as runs of one colour, filled as rectangles, one
colour at a time (one unit per module, scaled by the style's scale, as segno does). No alpha: PDF and EPS
here are for print, so colours are drawn opaque and a fully transparent one is not drawn (see
rendering._opaque). The PDF also carries the logo as an image with a soft mask (its alpha).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PIL import Image

Run = tuple[int, int, int]  # x, row from the top, width: modules


@dataclass(frozen=True)
class Placement:
    """Where an image goes, in modules from the top-left corner of the whole image (border included)."""

    x: float
    y: float
    width: float
    height: float


def colour_runs(rows: Iterable[Sequence[str | None]]) -> dict[str, list[Run]]:
    """Each colour's horizontal runs; None (not drawn) has none."""
    runs: dict[str, list[Run]] = {}
    for y, row in enumerate(rows):
        x = 0
        while x < len(row):
            colour, start = row[x], x
            while x < len(row) and row[x] == colour:
                x += 1
            if colour is not None:
                runs.setdefault(colour, []).append((start, y, x - start))
    return runs


def _rgb(colour: str) -> str:
    return " ".join(f"{int(colour[i : i + 2], 16) / 255:.4g}" for i in (1, 3, 5))


def write_eps(runs: dict[str, list[Run]], modules: int, scale: int) -> bytes:
    side = modules * scale
    lines = [
        "%!PS-Adobe-3.0 EPSF-3.0",
        "%%Creator: qrflow",
        f"%%BoundingBox: 0 0 {side} {side}",
        "%%EndComments",
        "gsave",
        f"{scale} {scale} scale",
    ]
    for colour, colour_runs_ in runs.items():
        lines.append(f"{_rgb(colour)} setrgbcolor")
        # PostScript's y grows upwards: row 0 is the top one.
        lines += [f"{x} {modules - 1 - y} {w} 1 rectfill" for x, y, w in colour_runs_]
    lines += ["grestore", "showpage", "%%EOF", ""]
    return "\n".join(lines).encode("ascii")


def write_pdf(
    runs: dict[str, list[Run]],
    modules: int,
    scale: int,
    logo: Image.Image | None = None,
    placement: Placement | None = None,
) -> bytes:
    side = modules * scale
    ops = [f"{scale} 0 0 {scale} 0 0 cm"]
    for colour, colour_runs_ in runs.items():
        ops.append(f"{_rgb(colour)} rg")
        ops += [f"{x} {modules - 1 - y} {w} 1 re" for x, y, w in colour_runs_]
        ops.append("f")
    objects: list[bytes] = []
    resources = ""
    if logo is not None and placement is not None:
        rgba = logo.convert("RGBA")
        # Image space is a unit square: scale it to the placement, from the bottom-left corner.
        bottom = modules - placement.y - placement.height
        ops.append(f"q {placement.width:.4f} 0 0 {placement.height:.4f} {placement.x:.4f} {bottom:.4f} cm /Logo Do Q")
        resources = " /Resources << /XObject << /Logo 5 0 R >> >>"
        alpha = _image_object(rgba.getchannel("A").tobytes(), rgba.size, "/DeviceGray", "")
        rgb = _image_object(rgba.convert("RGB").tobytes(), rgba.size, "/DeviceRGB", " /SMask 6 0 R")
        objects = [rgb, alpha]
    content = zlib.compress(" ".join(ops).encode("ascii"), 6)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {side} {side}] /Contents 4 0 R{resources} >>".encode(),
        _stream(b"", content),
        *objects,
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.write(b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets))
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def _stream(dictionary: bytes, data: bytes) -> bytes:
    head = b"<< " + dictionary + f" /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode()
    return head + data + b"\nendstream"


def _image_object(pixels: bytes, size: tuple[int, int], colour_space: str, extra: str) -> bytes:
    width, height = size
    dictionary = (
        f"/Type /XObject /Subtype /Image /Width {width} /Height {height} "
        f"/ColorSpace {colour_space} /BitsPerComponent 8{extra}"
    ).encode()
    return _stream(dictionary, zlib.compress(pixels, 6))
