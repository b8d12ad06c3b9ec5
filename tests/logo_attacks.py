"""SVG logos that cost far more to draw than their size says (issue #13's reproductions), for tests."""

from __future__ import annotations

import base64
import io

from PIL import Image

_OPEN = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 100 100">'


def _big_png(side: int = 4096) -> str:
    # One bit per pixel: a 4096×4096 image in ~2 KB, as the attack's was.
    image = Image.new("1", (side, side), 1)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode("ascii")


def embedded_image_used(times: int = 60) -> bytes:
    uses = "".join(f'<use xlink:href="#big" x="{i % 10}" y="{i // 10}"/>' for i in range(times))
    defs = f'<defs><image id="big" width="100" height="100" xlink:href="data:image/png;base64,{_big_png()}"/></defs>'
    return f"{_OPEN}{defs}{uses}</svg>".encode()


def nested_uses(levels: int = 4, fan_out: int = 10) -> bytes:
    defs = ['<rect id="l0" width="1" height="1" fill="#000"/>']
    for level in range(1, levels + 1):
        uses = "".join(f'<use xlink:href="#l{level - 1}" x="{i}"/>' for i in range(fan_out))
        defs.append(f'<g id="l{level}">{uses}</g>')
    return f'{_OPEN}<defs>{"".join(defs)}</defs><use xlink:href="#l{levels}"/></svg>'.encode()


def turbulence(octaves: int | str, base_frequency: str = "0.05") -> bytes:
    return (
        f'{_OPEN}<filter id="t"><feTurbulence baseFrequency="{base_frequency}" numOctaves="{octaves}"/></filter>'
        f'<rect width="100" height="100" filter="url(#t)"/></svg>'
    ).encode()


def scaled_morphology() -> bytes:
    """Looks cheap to a static estimate (a 0.5-unit radius), but a transform scales the filter 40 times:
    only the drawing's own CPU limit stops it."""
    return (
        f'{_OPEN}<filter id="m"><feMorphology operator="dilate" radius="0.5"/></filter>'
        f'<g transform="scale(40)"><rect width="2.5" height="2.5" filter="url(#m)"/></g></svg>'
    ).encode()
