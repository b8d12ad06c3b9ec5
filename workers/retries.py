"""How tasks wait out faults."""

from sqlalchemy.exc import InterfaceError, OperationalError

from app.kit.storage import StoreUnavailable

# The database being away is a fault to wait out, not a failed task: retry with capped exponential
# backoff for about an hour. Each retry is a new message, published before this one is acknowledged,
# so nothing is lost if the worker dies meanwhile.
DATABASE_DOWN = (OperationalError, InterfaceError)
retry_on_database_down = {
    "autoretry_for": DATABASE_DOWN,
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 40,
}

# Renders also read and write the image store: one that is down (an S3 server away: docs/storage.md) is
# waited out the same way, and costs the code none of its attempts (app/qrcodes/jobs.py).
retry_on_database_or_store_down = {**retry_on_database_down, "autoretry_for": (*DATABASE_DOWN, StoreUnavailable)}
