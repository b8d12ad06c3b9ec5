"""What drawing an SVG logo in a limited child process costs, against drawing it in-process.

    .venv/bin/python bench/logo_sandbox.py [--repeat N]

Three ways to draw the same logo, measured in one run so their ratios compare:
  in-process   resvg_py.svg_to_bytes, as the gateway and workers did before (holding the GIL)
  warm child   app.qrcodes.logo_sandbox.render_svg with a child kept from the previous job (the default)
  cold child   the same after closing the pool: a new child (Python + resvg) per drawing
at 128 px and at logo_files.MAX_DRAW_SIDE (1024 px). Median wall milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import resvg_py  # noqa: E402

from app.qrcodes import logo_sandbox  # noqa: E402
from app.qrcodes.logo_files import MAX_DRAW_SIDE  # noqa: E402

LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><defs><linearGradient id="g">'
    '<stop offset="0" stop-color="#1a237e"/><stop offset="1" stop-color="#00897b"/></linearGradient></defs>'
    '<circle cx="50" cy="50" r="46" fill="url(#g)"/>'
    + "".join(f'<circle cx="{20 + 6 * i}" cy="{30 + (i * 7) % 40}" r="4" fill="#fff"/>' for i in range(10))
    + '<path d="M20 70 Q50 95 80 70" stroke="#fff" stroke-width="5" fill="none"/></svg>'
)


def median_ms(draw, side: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        draw(side)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def in_process(side: int) -> None:
    bytes(resvg_py.svg_to_bytes(svg_string=LOGO, width=side, height=side))


def warm_child(side: int) -> None:
    logo_sandbox.render_svg(LOGO, side, side, logo_sandbox.DRAW_LIMITS)


def cold_child(side: int) -> None:
    logo_sandbox.close()
    logo_sandbox.render_svg(LOGO, side, side, logo_sandbox.DRAW_LIMITS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    args, _ = parser.parse_known_args()  # bench/run.py passes every benchmark the same arguments
    print(f"{'side':>6} {'in-process ms':>14} {'warm child ms':>14} {'cold child ms':>14} "
          f"{'warm ÷ in':>10} {'cold ÷ in':>10}")
    for side in (128, MAX_DRAW_SIDE):
        inline = median_ms(in_process, side, args.repeat)
        warm_child(side)  # one warm child
        warm = median_ms(warm_child, side, args.repeat)
        cold = median_ms(cold_child, side, max(3, args.repeat // 4))
        print(f"{side:>6} {inline:>14.1f} {warm:>14.1f} {cold:>14.1f} {warm / inline:>10.2f} {cold / inline:>10.2f}")
    logo_sandbox.close()


if __name__ == "__main__":
    main()
