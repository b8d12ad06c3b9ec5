"""Serving stored images. A PNG at another scale is derived from the stored one, without re-rendering:
every module is a square of `stored_scale` pixels, so nearest-neighbour resampling is exact."""

from __future__ import annotations

import io

from PIL import Image

from app.kit.errors import Invalid

MEDIA_TYPES = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "eps": "application/postscript",
}
MAX_PNG_SIDE = 8192


def rescale_png(data: bytes, stored_scale: int, scale: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        modules_w, modules_h = image.width // stored_scale, image.height // stored_scale
        width, height = modules_w * scale, modules_h * scale
        if max(width, height) > MAX_PNG_SIDE:
            raise Invalid(
                f"at scale {scale} the image would be {width} px wide; the limit is {MAX_PNG_SIDE} px",
                field="scale",
            )
        modules = image.resize((modules_w, modules_h), Image.Resampling.NEAREST)
        scaled = modules.resize((width, height), Image.Resampling.NEAREST)
        out = io.BytesIO()
        scaled.save(out, format="PNG", optimize=False)
        return out.getvalue()
