"""Every context's tables, imported in one place for Alembic and for tests that build schemas."""

from app.analytics.models import DailyBucket, HourlyBucket, RollupState, VisitorScan
from app.gateway.idempotency import IdempotencyRecord
from app.identity.models import ApiKey, Person, Workspace
from app.kit.db import Base
from app.links.models import Link
from app.qrcodes.batches.models import Batch, BatchItem
from app.qrcodes.logos import Logo
from app.qrcodes.models import QRCode, QRCodeTag
from app.scans.models import Scan, VisitorSalt
from app.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

__all__ = [
    "ApiKey", "Base", "Batch", "BatchItem", "DailyBucket", "HourlyBucket", "RollupState", "IdempotencyRecord", "Link",
    "Logo", "Person", "QRCode", "QRCodeTag", "Scan", "VisitorSalt", "VisitorScan", "Workspace",
    "WebhookAttempt", "WebhookDelivery", "WebhookEndpoint", "WebhookEvent",
]
