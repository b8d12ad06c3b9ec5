"""The render cost model (app/qrcodes/render_cost.py) against what rendering measures, in one run.

    .venv/bin/python bench/render_cost.py [--repeat N]

For plain codes, codes with module colours and codes with a (PNG) logo, at three sizes: the CPU seconds
of render_images plus the read-back a worker does (median of N), the model's estimate, and their ratio.
The model's per-pixel figures are set from these runs; a ratio far from 1 on another machine only scales
the limits (QRFLOW_MAX_RENDER_COST is in this machine's seconds).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from app.qrcodes import render_cost  # noqa: E402
from app.qrcodes.decoration import LogoSource  # noqa: E402
from app.qrcodes.readback import reads_back  # noqa: E402
from app.qrcodes.rendering import render_images  # noqa: E402
from app.qrcodes.style import Style  # noqa: E402

CONTENT = "https://example.com/campaign/" + "a" * 300  # version 14 at level H


def png_logo() -> LogoSource:
    image = Image.new("RGBA", (256, 256), (26, 35, 126, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return LogoSource("image/png", out.getvalue())


def measure(style: dict, logo: LogoSource | None, repeat: int) -> float:
    parsed = Style.model_validate(style)
    times = []
    for _ in range(repeat):
        started = time.process_time()
        images = render_images(CONTENT, parsed, logo=logo)
        if parsed.decorated:
            reads_back(images["png"], CONTENT)
        times.append(time.process_time() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args, _ = parser.parse_known_args()  # bench/run.py passes every benchmark the same arguments
    kinds = {
        "plain": ({}, None),
        "colours": ({"data_dark": "#1a237e"}, None),
        "logo": ({"logo": str(uuid.uuid4())}, png_logo()),
    }
    measure({"error": "H"}, None, 1)  # imports and first-call costs
    print(f"{'kind':>8} {'scale':>6} {'pixels':>12} {'measured s':>11} {'estimate s':>11} {'estimate ÷ measured':>20}")
    for name, (extra, logo) in kinds.items():
        for scale in (10, 30, 50):
            style = {"error": "H", "scale": scale, **extra}
            stored = Style.model_validate(style).model_dump(mode="json", exclude_none=True)
            estimate = render_cost.estimate(CONTENT, stored)
            measured = measure(style, logo, args.repeat)
            side = (render_cost.modules(CONTENT, "H", False) + 8) * scale
            print(f"{name:>8} {scale:>6} {side * side:>12,} {measured:>11.3f} {estimate:>11.3f} "
                  f"{estimate / measured:>20.2f}")


if __name__ == "__main__":
    main()
