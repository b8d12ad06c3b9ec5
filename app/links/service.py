"""Dynamic links: slugs, targets, and resolving a slug for the redirect."""

from __future__ import annotations

import secrets
import string
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.links.models import Link

_SLUG_ALPHABET = string.ascii_letters + string.digits
GENERATED_SLUG_LENGTH = 8  # 62^8 ≈ 2·10^14: collisions are rare enough to simply draw again


def generate_slug() -> str:
    return "".join(secrets.choice(_SLUG_ALPHABET) for _ in range(GENERATED_SLUG_LENGTH))


def short_url(public_base_url: str, slug: str) -> str:
    return f"{public_base_url}/r/{slug}"


def new_link(workspace_id: uuid.UUID, target_url: str, slug: str | None) -> Link:
    """A link with the requested slug, or a fresh one.

    No look-up first: the slugs' unique index decides at commit, where the caller turns a conflict into
    SlugTaken. A generated slug colliding (one chance in 10^14 per existing slug) fails the same way,
    and the client's retry draws another.
    """
    return Link(workspace_id=workspace_id, slug=slug or generate_slug(), target_url=target_url)


@dataclass(frozen=True)
class Resolution:
    target_url: str | None  # None: the link exists but no longer redirects
    gone: bool


async def resolve(session: AsyncSession, slug: str) -> Resolution | None:
    link = await session.scalar(select(Link).where(Link.slug == slug))
    if link is None:
        return None
    if link.deleted_at is not None:
        return Resolution(None, gone=True)
    return Resolution(link.target_url, gone=False)
