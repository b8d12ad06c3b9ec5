"""Workspaces and API keys.

A key looks like `qrf_<prefix>_<secret>`. The prefix is stored in clear to find the key and to let people
tell their keys apart; only the SHA-256 of the whole key is kept, and it is shown once, when issued.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.identity.models import ApiKey, Scope, Workspace
from app.kit.db import utcnow
from app.kit.errors import Invalid, NotFound

KEY_PREFIX = "qrf"


@dataclass(frozen=True)
class Principal:
    """Who calls a service: an API key, or a person signed in to the dashboard (key_id None), with the
    scope their key or role grants."""

    workspace_id: uuid.UUID
    key_id: uuid.UUID | None
    scope: Scope


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key(workspace_id: uuid.UUID, scope: Scope, name: str | None = None) -> tuple[ApiKey, str]:
    prefix = secrets.token_hex(4)
    plaintext = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(24)}"
    key = ApiKey(
        id=uuid.uuid4(), workspace_id=workspace_id, prefix=prefix, key_hash=_hash(plaintext), scope=scope, name=name
    )
    return key, plaintext


def get_or_create_workspace(session: Session, name: str) -> Workspace:
    workspace = session.scalar(select(Workspace).where(Workspace.name == name))
    if workspace is None:
        workspace = Workspace(id=uuid.uuid4(), name=name)
        session.add(workspace)
        session.flush()
    return workspace


class UnknownWorkspace(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name, self.known = name, known


def workspace_named(session: Session, name: str, *, create: bool) -> Workspace:
    """The workspace of this name; without create, an unknown name (a typo) is UnknownWorkspace."""
    if not create and session.scalar(select(Workspace.id).where(Workspace.name == name)) is None:
        raise UnknownWorkspace(name, list(session.scalars(select(Workspace.name).order_by(Workspace.name))))
    return get_or_create_workspace(session, name)


def issue_api_key(
    session: Session, workspace_name: str, scope: Scope, name: str | None = None, *, create_workspace: bool = True
) -> str:
    """A new key of the workspace; without create_workspace, an unknown name (a typo) is UnknownWorkspace."""
    workspace = workspace_named(session, workspace_name, create=create_workspace)
    key, plaintext = new_api_key(workspace.id, scope, name)
    session.add(key)
    return plaintext


def revoke_api_key(session: Session, prefix: str) -> bool:
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)))
    if key is None:
        return False
    key.revoked_at = utcnow()
    return True


def has_workspaces(session: Session) -> bool:
    return session.scalar(select(Workspace.id).limit(1)) is not None


def _prefix_of(token: str) -> str | None:
    parts = token.split("_")
    if len(parts) < 3 or parts[0] != KEY_PREFIX:
        return None
    return parts[1]


async def authenticate(session: AsyncSession, token: str) -> Principal | None:
    """Reads only: the key's last use is noted apart (app/identity/usage.py)."""
    prefix = _prefix_of(token)
    if prefix is None:
        return None
    key = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.key_hash, _hash(token)):
        return None
    return Principal(workspace_id=key.workspace_id, key_id=key.id, scope=Scope(key.scope))


# Workspace-scoped key management, for the dashboard's API keys page: another workspace's key is NotFound.


async def list_api_keys(session: AsyncSession, workspace_id: uuid.UUID) -> list[ApiKey]:
    return list(
        await session.scalars(
            select(ApiKey).where(ApiKey.workspace_id == workspace_id).order_by(ApiKey.created_at.desc(), ApiKey.id)
        )
    )


async def create_api_key(principal: Principal, session: AsyncSession, scope: Scope, name: str | None) -> str:
    """A new key of the caller's workspace, at most the caller's own scope (an admin issues no operator key)."""
    if not principal.scope.allows(scope):
        raise Invalid(f"you may issue keys up to scope {principal.scope.value}", field="scope")
    name = (name or "").strip() or None
    if name is not None and len(name) > 100:
        raise Invalid("a key's name has at most 100 characters", field="name")
    key, plaintext = new_api_key(principal.workspace_id, scope, name)
    session.add(key)
    await session.commit()
    return plaintext


async def revoke_workspace_api_key(session: AsyncSession, workspace_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None or key.workspace_id != workspace_id:
        raise NotFound("no such API key")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.commit()
    return key
