"""What Celery beat schedules. Run exactly one beat per deployment (docker-compose has one service)."""

from __future__ import annotations

from app.settings import Settings


def beat_schedule(settings: Settings) -> dict:
    return {
        "republish-stale-renders": {
            "task": "qrcodes.republish_stale_renders",
            "schedule": settings.render_republish_interval_seconds,
            # A missed run is replaced by the next one; stacking them up would only repeat work.
            "options": {"expires": settings.render_republish_interval_seconds},
        },
    }
