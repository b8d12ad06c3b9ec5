"""What Celery beat schedules. Run exactly one beat per deployment (docker-compose has one service)."""

from __future__ import annotations

from app.kit.settings import Settings


def beat_schedule(settings: Settings) -> dict:
    return {
        "republish-stale-renders": {
            "task": "qrcodes.republish_stale_renders",
            "schedule": settings.render_republish_interval_seconds,
            # A missed run is replaced by the next one; stacking them up would only repeat work.
            "options": {"expires": settings.render_republish_interval_seconds},
        },
        "republish-stale-batch-renders": {
            "task": "qrcodes.republish_stale_batch_renders",
            "schedule": settings.render_republish_interval_seconds,
            "options": {"expires": settings.render_republish_interval_seconds},
        },
        "purge-visitor-salts": {
            "task": "scans.purge_visitor_salts",
            "schedule": 3600.0,
            "options": {"expires": 3600.0},
        },
        # Monthly partitions of `scans` ahead of need (PostgreSQL), so no batch of scans waits for one.
        "create-scan-partitions": {
            "task": "scans.create_partitions",
            "schedule": 86400.0,
            "options": {"expires": 86400.0},
        },
        # Fold new scans into the analytics buckets (and apply retention). A run never overlaps another
        # (app/analytics/rollup.py locks), and one that missed its slot is replaced by the next.
        "analytics-rollup": {
            "task": "analytics.rollup",
            "schedule": settings.rollup_interval_seconds,
            "options": {"expires": settings.rollup_interval_seconds},
        },
        # Webhook deliveries whose message the broker missed or lost (app/webhooks/jobs.py).
        "webhooks-sweep-outbox": {
            "task": "webhooks.sweep_outbox",
            "schedule": settings.webhook_sweep_interval_seconds,
            "options": {"expires": settings.webhook_sweep_interval_seconds},
        },
        # API keys' last uses, noted by the gateways in Redis, into the database (app/identity/usage.py).
        "flush-key-usage": {
            "task": "identity.flush_key_usage",
            "schedule": settings.key_usage_flush_seconds,
            "options": {"expires": settings.key_usage_flush_seconds},
        },
    }
