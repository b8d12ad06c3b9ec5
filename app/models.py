"""Every context's tables, imported in one place for Alembic and for tests that build schemas."""

from app.db import Base
from app.gateway.idempotency import IdempotencyRecord
from app.identity.models import ApiKey, Workspace
from app.links.models import Link
from app.qrcodes.models import QRCode, QRCodeTag

__all__ = ["ApiKey", "Base", "IdempotencyRecord", "Link", "QRCode", "QRCodeTag", "Workspace"]
