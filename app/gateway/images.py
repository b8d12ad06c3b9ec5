"""Serving stored images. A PNG at another scale is derived from the stored one, without re-rendering:
every module is a square of `stored_scale` pixels, so nearest-neighbour resampling is exact."""

from __future__ import annotations

import io

from anyio import to_thread
from fastapi.responses import Response, StreamingResponse
from PIL import Image

from app.kit.errors import Invalid, NotFound
from app.kit.storage import ImageStore

MEDIA_TYPES = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "eps": "application/postscript",
}
MAX_PNG_SIDE = 8192
MISSING_IMAGE = "the image file is missing from storage"


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


async def stored_image_response(
    store: ImageStore, key: str, fmt: str, headers: dict[str, str], rescale: tuple[int, int] | None = None
) -> Response:
    """A stored image as an answer (the API's and the dashboard's), or a PNG at another scale
    (rescale: stored scale, wanted scale). The store is read in a thread (a disk, or an S3 server across the
    network: docs/storage.md); one that is down is a 503 with Retry-After (StoreUnavailable), before any
    byte of the answer is sent."""
    if rescale is not None:
        original = await to_thread.run_sync(store.get, key)
        if original is None:
            raise NotFound(MISSING_IMAGE, field="id")
        data = await to_thread.run_sync(rescale_png, original, *rescale)
        return Response(data, media_type=MEDIA_TYPES["png"], headers=headers)
    stored = await to_thread.run_sync(store.open, key)
    if stored is None:
        raise NotFound(MISSING_IMAGE, field="id")
    # A sync iterator: Starlette reads the rest of it in a thread too.
    return StreamingResponse(
        stored.chunks, media_type=MEDIA_TYPES[fmt], headers={**headers, "Content-Length": str(stored.size)}
    )
