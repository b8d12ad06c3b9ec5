"""The Celery application. Workers, beat and Flower run it; the gateway uses it only to publish.

Task modules are listed in `include` and imported when a worker boots, never by the gateway, which
publishes by task name and so never imports segno or any worker-side code.
"""

from celery import Celery

from app.kit.settings import get_settings
from workers.beat import beat_schedule

celery_app = Celery(
    "qrflow",
    include=["tasks.qrcodes", "tasks.scans", "tasks.batches", "tasks.analytics", "tasks.identity", "tasks.webhooks"],
)
celery_app.config_from_object("celeryconfig")
celery_app.conf.beat_schedule = beat_schedule(get_settings())

import workers.memory_limit  # noqa: E402,F401 - bounds each pool process's memory
import workers.signals  # noqa: E402,F401 - connects logging, context and per-process set-up
