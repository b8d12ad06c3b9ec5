"""PDF and EPS of a two-colour code straight from the module matrix: what segno's write_pdf and write_eps
produce for the same matrix, scale, border and colours (their creation time aside), without segno's
module-by-module run finding and, for EPS, textwrap over the whole path (most of segno's EPS time).

Both draw each horizontal run of dark modules as a line of one unit's width, as segno does.
tests/unit/test_raster.py checks the bytes against segno's.
"""

from __future__ import annotations

import time
import zlib

import numpy as np
from segno import writers

from app.qrcodes.raster import dark_runs

_EPS_LINE = 254  # segno wraps every EPS line at this width


def write_pdf(matrix: np.ndarray, scale: int, border: int, dark: str, light: str | None) -> bytes:
    size = matrix.shape[0]
    side = (size + 2 * border) * scale
    commands = []
    if light is not None:
        commands += ["{} {} {} rg".format(*_floats(light)), f"0 0 {side} {side} re", "f q"]
    if not writers._color_is_black(dark):
        commands.append("{} {} {} RG".format(*_floats(dark)))
    if scale > 1:
        commands.append(f"{scale} 0 0 {scale} 0 0 cm")
    commands.append(f"1 0 0 1 {border} {size + border - 0.5} cm")
    rows, starts, ends = dark_runs(matrix)
    commands += [
        f"{start} {-row} m {end} {-row} l"
        for row, start, end in zip(rows.tolist(), starts.tolist(), ends.tolist(), strict=True)
    ]
    commands.append("S")
    graphic = zlib.compress(" ".join(commands).encode("ascii"), 9)
    creator = writers.CREATOR
    objects = [
        b"obj <</Type /Catalog /Pages 2 0 R>>\r\nendobj\r\n",
        b"obj <</Type /Pages /Kids [3 0 R] /Count 1>>\r\nendobj\r\n",
        f"obj <</Type /Page /Parent 2 0 R /MediaBox [0 0 {side} {side}] /Contents 4 0 R>>\r\nendobj\r\n".encode(),
        f"obj <</Length {len(graphic)} /Filter /FlateDecode>>\r\nstream\r\n".encode(),
    ]
    out = bytearray(b"%PDF-1.4\r%\xe2\xe3\xcf\xd3\r\n")
    positions = []
    for number, body in enumerate(objects, start=1):
        positions.append(len(out))
        out += f"{number} 0 ".encode() + body
    out += graphic + b"\r\nendstream\r\nendobj\r\n"
    positions.append(len(out))
    out += (
        f"5 0 obj <</CreationDate(D:{_pdf_date()})/Producer({creator})/Creator({creator})\r\n>>\r\nendobj\r\n"
    ).encode("ascii")
    xref = len(out)
    out += f"xref\r\n0 {len(positions) + 1}\r\n0000000000 65535 f\r\n".encode()
    out += "".join(f"{position:010d} 00000 n\r\n" for position in positions).encode()
    out += f"trailer <</Size {len(positions) + 1}/Root 1 0 R/Info 5 0 R>>\r\nstartxref\r\n{xref}\r\n%%EOF\r\n".encode()
    return bytes(out)


def _pdf_date() -> str:
    # segno's own expression, offset quirks included.
    return f"{time.strftime('%Y%m%d%H%M%S')}{(time.timezone // 3600):+03d}'{(abs(time.timezone) % 60):02d}'"


def write_eps(matrix: np.ndarray, scale: int, border: int, dark: str, light: str | None) -> bytes:
    size = matrix.shape[0]
    side = (size + 2 * border) * scale
    black = writers._color_is_black(dark)
    lines = [
        "%!PS-Adobe-3.0 EPSF-3.0",
        f"%%Creator: {writers.CREATOR}",
        f"%%CreationDate: {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "%%DocumentData: Clean7Bit",
        f"%%BoundingBox: 0 0 {side} {side}",
        "/m { rmoveto } bind def",
        "/l { rlineto } bind def",
    ]
    if light is not None:
        lines.append("{:f} {:f} {:f} setrgbcolor clippath fill".format(*_floats(light)))
        if black:
            lines.append("0 0 0 setrgbcolor")
    if not black:
        lines.append("{:f} {:f} {:f} setrgbcolor".format(*_floats(dark)))
    if scale != 1:
        lines.append(f"{scale} {scale} scale")
    lines.append("newpath")
    rows, starts, ends = dark_runs(matrix)
    top = size + border - 0.5
    # The first run absolute, each next one relative to where the previous ended.
    x1 = (starts + border).tolist()
    x2 = (ends + border).tolist()
    row = rows.tolist()
    words = [str(x1[0]), str(top - row[0]), "moveto", str(x2[0] - x1[0]), "0", "l"]
    previous_row = 0  # segno measures the second run from the top row, wherever the first one was
    for index in range(1, len(row)):
        words += [str(x1[index] - x2[index - 1]), str(previous_row - row[index]), "m", str(x2[index] - x1[index]),
                  "0", "l"]
        previous_row = row[index]
    lines += _wrapped(words)
    lines += ["stroke", "%%EOF"]
    return ("\n".join(lines) + "\n").encode("ascii")


def _wrapped(words: list[str]) -> list[str]:
    """textwrap.wrap(" ".join(words), 254) for words without spaces or hyphenated letters: greedy lines."""
    lines, line, length = [], [], -1
    for word in words:
        if line and length + 1 + len(word) > _EPS_LINE:
            lines.append(" ".join(line))
            line, length = [], -1
        line.append(word)
        length += 1 + len(word)
    if line:
        lines.append(" ".join(line))
    return lines


def _floats(colour: str) -> tuple[float | int, ...]:
    """segno's colour to floats for PDF and EPS (a channel of exactly 1 stays the int 1)."""
    return tuple(1 / 255.0 * channel if channel != 1 else channel for channel in writers._color_to_rgb(colour))
