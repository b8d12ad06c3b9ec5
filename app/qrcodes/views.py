"""From a stored code to what the API shows."""

from __future__ import annotations

from app.links.service import short_url
from app.qrcodes.models import QRCode
from app.qrcodes.schemas import IMAGE_FORMATS, CodeOut, Style


def code_out(code: QRCode, public_base_url: str) -> CodeOut:
    link = code.link
    style = Style.from_stored(code.style)
    # A code with a logo has no EPS image (EPS here has no way to carry one; see decoration.py).
    formats = [fmt for fmt in IMAGE_FORMATS if not (fmt == "eps" and style.logo is not None)]
    return CodeOut(
        id=code.id,
        kind=code.kind,
        status=code.status,
        error=code.error,
        content=code.content,
        data=_data(code),
        dynamic=link is not None,
        slug=link.slug if link else None,
        short_url=short_url(public_base_url, link.slug) if link else None,
        target_url=link.target_url if link else None,
        forward_query=link.forward_query if link else None,
        expires_at=link.expires_at if link else None,
        max_scans=link.max_scans if link else None,
        disabled=link.disabled if link else None,
        scans_total=link.scans_total if link else None,
        style=style,
        title=code.title,
        tags=code.tags,
        images={fmt: f"/v1/qrcodes/{code.id}/image.{fmt}" for fmt in formats},
        created_at=code.created_at,
        updated_at=code.updated_at,
        rendered_at=code.rendered_at,
    )


def _data(code: QRCode) -> dict:
    """A dynamic code's `data.url` is its link's current target: one truth after a PATCH of target_url
    (rows patched before update_code kept them in step still hold the first URL)."""
    if code.link is not None and "url" in code.data:
        return {**code.data, "url": code.link.target_url}
    return code.data
