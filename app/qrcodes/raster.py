"""PNG and SVG of a two-colour code straight from the module matrix: what segno's write_png and write_svg
produce for the same matrix, scale, border and colours, without their per-pixel Python loops.

PNG: segno's layout (1-bit greyscale for black/white, else a 2-entry palette; each module row one
unfiltered scanline followed by scale - 1 "Up" scanlines of zeros, the quiet zone as unfiltered scanlines),
the scanlines built by numpy (repeat, packbits) and compressed once by zlib in C. At segno's zlib level 9
the bytes are segno's; the default level 6 gives the same pixels at a tenth of the compression time.
SVG: segno's one path of horizontal dark runs (relative moves, a stroke of one unit), the runs found by
numpy. segno's colour helpers are reused, so colours are written exactly as segno writes them.
tests/unit/test_raster.py checks the bytes against segno's.
"""

from __future__ import annotations

import struct
import zlib
from xml.sax.saxutils import quoteattr

import numpy as np
from segno import writers

_BLACK, _WHITE = (0, 0, 0), (255, 255, 255)
_TRANSPARENT = (-1, -1, -1, -1)  # segno's placeholder
_PNG_COMPRESSION = 6  # zlib's default; segno's 9 costs ~10× the time for ~9 % fewer bytes on these scanlines


def write_png(
    matrix: np.ndarray, scale: int, border: int, dark: str, light: str | None, compression: int = _PNG_COMPRESSION
) -> bytes:
    colour_type, chunks, dark_index, light_index = _png_colours(dark, light)
    size = matrix.shape[0]
    width = (size + 2 * border) * scale
    row_bytes = (width + 7) // 8
    indices = np.where(matrix.astype(bool), np.uint8(dark_index), np.uint8(light_index))
    if border:
        indices = np.pad(indices, ((0, 0), (border, border)), constant_values=light_index)
    pixels = np.packbits(np.repeat(indices, scale, axis=1), axis=1)
    # Filter byte 0 (None) on a module row's first scanline, 2 (Up) on its copies, which are then all zero.
    scanlines = np.zeros((size, scale, 1 + row_bytes), dtype=np.uint8)
    scanlines[:, 0, 1:] = pixels
    scanlines[:, 1:, 0] = 2
    quiet = np.zeros((border * scale, 1 + row_bytes), dtype=np.uint8)
    quiet[:, 1:] = np.packbits(np.full(width, light_index, dtype=np.uint8))
    raw = quiet.tobytes() + scanlines.tobytes() + quiet.tobytes()
    header = struct.pack(">2I5B", width, width, 1, colour_type, 0, 0, 0)
    return b"".join(
        (
            b"\211PNG\r\n\032\n",
            _chunk(b"IHDR", header),
            *chunks,
            _chunk(b"IDAT", zlib.compress(raw, compression)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(name: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + name + data + struct.pack(">I", zlib.crc32(name + data))


def _png_colours(dark: str, light: str | None) -> tuple[int, list[bytes], int, int]:
    """(colour type, PLTE/tRNS chunks, dark's index, light's index), as segno's write_png decides them
    for two colours."""
    dark_rgb = _png_colour(dark)
    light_rgb = _png_colour(light)
    palette = sorted({dark_rgb, light_rgb}, key=lambda colour: colour[:3])
    transparent = _TRANSPARENT in palette
    greyscale = len(palette) == 2 and all(colour in (_TRANSPARENT, _BLACK, _WHITE) for colour in palette)
    chunks = []
    if not greyscale:
        palette.sort(key=len, reverse=True)  # RGBA colours first
        if transparent:
            alpha = len(palette[1]) == 3
            candidates = writers._NAME2RGB.values() if alpha else ((*c, 0) for c in writers._NAME2RGB.values())
            stand_in = next(colour for colour in candidates if colour not in palette)
            palette[0] = stand_in
            dark_rgb = stand_in if dark_rgb == _TRANSPARENT else dark_rgb
            light_rgb = stand_in if light_rgb == _TRANSPARENT else light_rgb
        chunks.append(_chunk(b"PLTE", b"".join(struct.pack(">3B", *colour[:3]) for colour in palette)))
        if len(palette[0]) > 3:
            chunks.append(_chunk(b"tRNS", bytes(colour[3] for colour in palette if len(colour) > 3)))
        elif transparent:
            chunks.append(_chunk(b"tRNS", struct.pack(">B", 0)))
    elif transparent:
        if _BLACK in palette:
            palette = [_BLACK, _TRANSPARENT]
        chunks.append(_chunk(b"tRNS", struct.pack(">1H", palette.index(_TRANSPARENT))))
    return (0 if greyscale else 3), chunks, palette.index(dark_rgb), palette.index(light_rgb)


def _png_colour(colour: str | None) -> tuple[int, ...]:
    return _TRANSPARENT if colour is None else writers._color_to_rgb_or_rgba(colour, alpha_float=False)


def write_svg(matrix: np.ndarray, scale: int, border: int, dark: str, light: str | None) -> bytes:
    size = matrix.shape[0]
    side = (size + 2 * border) * scale
    modules = size + 2 * border
    rows, starts, ends = dark_runs(matrix)
    # Each run relative to where the previous one ended: x from its end, y from its row (segno's path).
    x1 = (starts + border).tolist()
    x2 = (ends + border).tolist()
    y = (rows + border).tolist()
    steps = []
    last_x, last_y = 0, -0.5
    for index, (start, end, row) in enumerate(zip(x1, x2, y, strict=True)):
        dy = row - last_y
        steps.append(f"{'m' if index else 'M'}{start - last_x} {_number(dy)}h{end - start}")
        last_x, last_y = end, row
    group = scale != 1 and light is not None
    transform = f' transform="scale({scale})"' if scale != 1 else ""
    paths = [f'<path{"" if group else transform} class="qrline"{_paint("stroke", dark)} d="{"".join(steps)}"/>']
    if light is not None:
        paths.append(f'<path{_paint("fill", light)} d="M0 0h{modules}v{modules}h-{modules}z"/>')
    body = "".join(sorted(paths, key=len))
    if group:
        body = f"<g{transform}>{body}</g>"
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{side}" height="{side}" class="segno">{body}</svg>\n'
    ).encode()


def _number(value: float) -> str:
    return str(int(value)) if int(value) == value else str(value)


def _paint(attribute: str, colour: str) -> str:
    web = writers._color_to_webcolor(colour, allow_css3_colors=False)
    if isinstance(web, tuple):
        web, opacity = web
        return f" {attribute}={quoteattr(web)} {attribute}-opacity={quoteattr(str(opacity))}"
    return f" {attribute}={quoteattr(web)}"


def dark_runs(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, first column, column after the last) of each horizontal run of dark modules, in reading order."""
    size = matrix.shape[0]
    padded = np.zeros((size, size + 2), dtype=np.int8)
    padded[:, 1:-1] = matrix
    edges = np.diff(padded, axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)
    return rows, starts, ends
