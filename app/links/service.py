"""Dynamic links: slugs, targets and limits. The redirect reads them through app/links/cache.py."""

from __future__ import annotations

import secrets
import string
import uuid
from datetime import datetime
from typing import Protocol

from app.links.models import Link

_SLUG_ALPHABET = string.ascii_letters + string.digits
GENERATED_SLUG_LENGTH = 8  # 62^8 ≈ 2·10^14: collisions are rare enough to simply draw again


def generate_slug() -> str:
    return "".join(secrets.choice(_SLUG_ALPHABET) for _ in range(GENERATED_SLUG_LENGTH))


def short_url(public_base_url: str, slug: str) -> str:
    return f"{public_base_url}/r/{slug}"


class LinkChanges(Protocol):
    """Told of every committed change to a link, so that no redirect cache keeps serving the old one
    (app/links/cache.py). Creation counts: a redirect cache remembers unknown slugs too."""

    async def changed(self, slug: str) -> None: ...


def new_link(
    workspace_id: uuid.UUID,
    target_url: str,
    slug: str | None,
    *,
    forward_query: bool = False,
    expires_at: datetime | None = None,
    max_scans: int | None = None,
    disabled: bool = False,
) -> Link:
    """A link with the requested slug, or a fresh one.

    No look-up first: the slugs' unique index decides at commit, where the caller turns a conflict into
    SlugTaken. A generated slug colliding (one chance in 10^14 per existing slug) fails the same way,
    and the client's retry draws another.
    """
    return Link(
        workspace_id=workspace_id,
        slug=slug or generate_slug(),
        target_url=target_url,
        forward_query=forward_query,
        expires_at=expires_at,
        max_scans=max_scans,
        disabled=disabled,
    )
