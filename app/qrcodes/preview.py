"""The dashboard's live preview, drawn by a worker (the gateway never renders): the code a create request
describes, as a PNG, and what a scanner reads back from it. Nothing is stored."""

from __future__ import annotations

import base64

from sqlalchemy.orm import Session, sessionmaker

from app.kit.storage import ImageStore
from app.qrcodes.content import KIND_DATA
from app.qrcodes.decoration import LogoSource
from app.qrcodes.events import PreviewRequested
from app.qrcodes.logos import load_logo
from app.qrcodes.readback import decoded_texts
from app.qrcodes.rendering import render_images
from app.qrcodes.style import Style
from app.qrcodes.symbol import FREE

# Pixels per module of a preview: enough to see the style, small enough for a quick answer.
PREVIEW_MAX_SCALE = 6


def render_preview(sessions: sessionmaker[Session], store: ImageStore, requested: PreviewRequested) -> dict:
    style = Style.from_stored(requested.style)
    style = style.model_copy(update={"scale": min(style.scale, PREVIEW_MAX_SCALE)})
    logo = None
    if style.logo is not None:
        with sessions() as session:
            try:
                logo = LogoSource(*load_logo(session, store, requested.workspace_id, style.logo))
            except LookupError as exc:
                return {"error": str(exc)}
    kind = KIND_DATA.get(requested.kind)
    try:
        png = render_images(requested.content, style, kind.symbol if kind else FREE, logo)["png"]
    except (ValueError, OSError) as exc:
        return {"error": str(exc)}
    return {"png": base64.b64encode(png).decode(), "decoded": decoded_texts(png)}
