from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, String, Uuid, false
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db import Base, UTCDateTime, new_id, utcnow


class Scope(StrEnum):
    """Scopes are ordered: each includes the ones before it. read, write and admin are a workspace's;
    operator is for the people who run the platform: what it allows acts on every workspace (the
    analytics rollup), so no workspace's admin may do it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    OPERATOR = "operator"

    def allows(self, required: Scope) -> bool:
        order = list(Scope)
        return order.index(self) >= order.index(required)


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """Only a SHA-256 of the key is stored: keys are 190 random bits, so a slow hash buys nothing."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[Scope] = mapped_column(String(10))
    name: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Role(StrEnum):
    """What a person may do in their workspace: each role grants what the matching key scope grants."""

    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"

    @property
    def scope(self) -> Scope:
        return ROLE_SCOPES[self]

    def allows(self, required: Role) -> bool:
        return self.scope.allows(required.scope)


# The one place a role becomes a scope: pages call the same services as the API, under this scope.
ROLE_SCOPES: dict[Role, Scope] = {Role.VIEWER: Scope.READ, Role.EDITOR: Scope.WRITE, Role.ADMIN: Scope.ADMIN}


class Person(Base):
    """Someone who signs in to the dashboard. The email is stored lower-cased, unique across the instance (a
    sign-in names no workspace, and Alice@x and alice@x are one mailbox); only an argon2id hash of the
    password is stored."""

    __tablename__ = "people"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(String(10))
    # Set when someone else chose the password (a one-time password an admin or `qrflow up` was shown):
    # the person chooses their own before anything else.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
