"""From a stored code to what the API shows."""

from __future__ import annotations

from app.links.service import short_url
from app.qrcodes.models import QRCode
from app.qrcodes.schemas import IMAGE_FORMATS, CodeOut, Style


def code_out(code: QRCode, public_base_url: str) -> CodeOut:
    link = code.link
    return CodeOut(
        id=code.id,
        kind=code.kind,
        status=code.status,
        error=code.error,
        content=code.content,
        data=code.data,
        dynamic=link is not None,
        slug=link.slug if link else None,
        short_url=short_url(public_base_url, link.slug) if link else None,
        target_url=link.target_url if link else None,
        style=Style.model_validate(code.style),
        title=code.title,
        tags=code.tags,
        images={fmt: f"/v1/qrcodes/{code.id}/image.{fmt}" for fmt in IMAGE_FORMATS},
        created_at=code.created_at,
        updated_at=code.updated_at,
        rendered_at=code.rendered_at,
    )
