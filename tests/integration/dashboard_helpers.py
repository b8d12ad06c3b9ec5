"""Signing people in to the dashboard from tests: a person made through the identity service, then the
sign-in form, as a browser would."""

from __future__ import annotations

import re
import uuid

from app.identity.models import Role
from app.identity.people import add_person, hash_new_password
from app.identity.service import get_or_create_workspace
from app.kit.db import create_sync_engine, sync_sessionmaker
from app.kit.settings import Settings

PASSWORD = "correct horse battery staple"


def make_person(settings: Settings, workspace: str, role: Role) -> str:
    """A new person of the workspace (created if need be) with PASSWORD; their email."""
    email = f"{role.value}-{uuid.uuid4().hex[:8]}@example.com"
    engine = create_sync_engine(settings)
    try:
        with sync_sessionmaker(engine).begin() as session:
            workspace_id = get_or_create_workspace(session, workspace).id
            add_person(session, workspace_id, email, role, hash_new_password(PASSWORD))
    finally:
        engine.dispose()
    return email


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
