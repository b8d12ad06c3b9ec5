"""Encoding and drawing one code on one core: the fast path (app/qrcodes/encoder.py, raster.py) against segno.

    .venv/bin/python bench/encode.py [--codes N] [--rounds R]

One process, one run; every path draws the same N contents (the short links of bench/render.py), in R
interleaved rounds so that whatever else runs on the machine weighs on all paths alike. Figures are CPU
seconds of this process (time.process_time), so other processes' load does not count against a path.
  matrix   segno.make_qr (mode and encoding as the app plans them)  vs  encoder.encode
  PNG      segno make + PNG at scale 10                             vs  encode + raster.write_png
  SVG      segno make + SVG at scale 10                             vs  encode + raster.write_svg
  4 formats segno make + PNG, SVG, PDF, EPS (the worker's render before) vs  rendering.render_images
The fast path's PNGs are checked to have segno's pixels, its SVGs segno's bytes, before timing. libzint's
PNG (scale 10, the same quiet zone) is printed beside them when `zint-bindings` is installed (pip install
zint-bindings; not a dependency): the physical anchor.
The figures are appended to bench/results/encode.md.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import segno
from PIL import Image
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/encode.py` puts bench/, not the project, on sys.path

from app.qrcodes.raster import write_png, write_svg  # noqa: E402
from app.qrcodes.rendering import encode_symbol, render_images  # noqa: E402
from app.qrcodes.style import Style  # noqa: E402
from app.qrcodes.symbol import plan_encoding  # noqa: E402
from bench.common import console, load_average, pass_miss  # noqa: E402
from bench.render import short_links  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "encode.md"
STYLE = Style()
GOALS = {"matrix": 4.0, "PNG scale 10": 3.0, "SVG": 2.0, "4 formats": None}


def segno_make(content: str) -> segno.QRCode:
    plan = plan_encoding(content)
    return segno.make_qr(content, error=STYLE.error, mode=plan.mode, encoding=plan.encoding)


def segno_image(kind: str) -> Callable[[str], bytes]:
    def draw(content: str) -> bytes:
        out = io.BytesIO()
        segno_make(content).save(out, kind=kind, scale=STYLE.scale, border=STYLE.border, dark=STYLE.dark,
                                 light=STYLE.light)
        return out.getvalue()

    return draw


def segno_all_formats(content: str) -> int:
    """What rendering.render_images did for a plain code before the fast path."""
    qr = segno_make(content)
    screen = {"scale": STYLE.scale, "border": STYLE.border, "dark": STYLE.dark, "light": STYLE.light}
    size = 0
    for kind in ("png", "svg", "pdf"):
        out = io.BytesIO()
        qr.save(out, kind=kind, **screen)
        size += out.tell()
    text = io.StringIO()
    qr.save(text, kind="eps", **screen)
    return size + text.tell()


def fast_image(writer: Callable[..., bytes]) -> Callable[[str], bytes]:
    def draw(content: str) -> bytes:
        return writer(encode_symbol(content, STYLE).matrix, STYLE.scale, STYLE.border, STYLE.dark, STYLE.light)

    return draw


def zint_png() -> Callable[[str], bytes] | None:
    try:
        import zint  # type: ignore[import-not-found]  # optional: pip install zint-bindings
    except ImportError:
        return None

    def draw(content: str) -> bytes:
        symbol = zint.Symbol()
        symbol.symbology = zint.Symbology.QRCODE
        symbol.option_1 = 2  # level M
        symbol.scale = STYLE.scale / 2  # zint's scale 1 is 2 pixels per module
        symbol.whitespace_width = symbol.whitespace_height = STYLE.border
        symbol.outfile = "memory.png"
        symbol.output_options = zint.OutputOptions.BARCODE_MEMORY_FILE
        symbol.encode(content)
        symbol.print()
        return bytes(symbol.memfile)

    return draw


def _pixels(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGBA").tobytes()


def check_identical(contents: list[str]) -> None:
    """The fast PNG has segno's pixels (its bytes differ by the zlib level only), the SVG segno's bytes."""
    for content in contents:
        assert _pixels(fast_image(write_png)(content)) == _pixels(segno_image("png")(content)), content
        assert fast_image(write_svg)(content) == segno_image("svg")(content), content


def measure(paths: dict[str, Callable[[str], object]], contents: list[str], rounds: int) -> dict[str, float]:
    """Codes per CPU second of each path."""
    spent = dict.fromkeys(paths, 0.0)
    per_round = max(1, len(contents) // rounds)
    for start in range(0, len(contents), per_round):
        chunk = contents[start : start + per_round]
        for name, work in paths.items():
            began = time.process_time()
            for content in chunk:
                work(content)
            spent[name] += time.process_time() - began
    return {name: len(contents) / seconds for name, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codes", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    contents = short_links(args.codes)
    check_identical(contents[:20])
    pairs = {
        "matrix": (segno_make, lambda content: encode_symbol(content, STYLE)),
        "PNG scale 10": (segno_image("png"), fast_image(write_png)),
        "SVG": (segno_image("svg"), fast_image(write_svg)),
        "4 formats": (segno_all_formats, lambda content: render_images(content, STYLE)),
    }
    paths: dict[str, Callable[[str], object]] = {}
    for name, (reference, fast) in pairs.items():
        paths[f"segno {name}"] = reference
        paths[f"fast {name}"] = fast
    zint = zint_png()
    if zint is not None:
        paths["libzint PNG scale 10"] = zint
    for work in paths.values():  # warm-up: per-version tables, imports
        work(contents[0])
    load_before = load_average()
    rates = measure(paths, contents, args.rounds)

    version = segno_make(contents[0]).version
    table = Table(title=f"{args.codes} short links (version {version}, level M), codes per CPU second, one core")
    for column in ("", "segno", "fast", "fast ÷ segno", "goal", "libzint"):
        table.add_column(column, justify="right")
    rows = []
    for name, goal in GOALS.items():
        ratio = rates[f"fast {name}"] / rates[f"segno {name}"]
        anchor = f"{rates['libzint PNG scale 10']:.0f}" if zint is not None and name.startswith("PNG") else "–"
        row = (name, f"{rates[f'segno {name}']:.0f}", f"{rates[f'fast {name}']:.0f}", f"{ratio:.1f}×")
        met = goal is None or ratio >= goal
        goal_text = "–" if goal is None else f"≥ {goal:g}×"
        table.add_row(*row, goal_text if goal is None else f"{goal_text} {pass_miss(met)}", anchor)
        rows.append((*row, goal_text if goal is None else f"{goal_text} {'PASS' if met else 'MISS'}", anchor))
    console.print(table)
    console.print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}")
    _append_results(rows, args, version, load_before)


def _append_results(rows: list[tuple[str, ...]], args: argparse.Namespace, version: int, load: list[float]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    header = "" if RESULTS.exists() else "# bench/encode.py history\n"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        header,
        f"\n## {stamp}: {args.codes} codes (version {version}, M), {args.rounds} rounds; Python "
        f"{platform.python_version()}, segno {segno.__version__}, {os.cpu_count()} cores, "
        f"load {' '.join(f'{x:.2f}' for x in load)}\n\n",
        "| path | segno codes/CPU s | fast codes/CPU s | fast ÷ segno | goal | libzint |\n",
        "|---|---|---|---|---|---|\n",
        *(f"| {' | '.join(row)} |\n" for row in rows),
    ]
    with RESULTS.open("a") as out:
        out.write("".join(lines))
    console.print(f"results appended to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
