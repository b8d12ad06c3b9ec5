"""Per-process resources of a worker: database engine, sessions, image store, publisher, scan enricher.

Created lazily and again after fork (worker_process_init): a connection pool must never be shared by a
parent and its prefork children.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.kit.broker_inventory import BrokerInventory, inventory_of
from app.kit.db import create_sync_engine, sync_sessionmaker
from app.kit.messaging import EventPublisher
from app.kit.settings import Settings, get_settings
from app.kit.storage import ImageStore, open_image_store
from app.qrcodes.jobs import Attempts
from app.qrcodes.recovery import LostAfter
from app.scans.enrichment import Enricher


@dataclass
class WorkerRuntime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ImageStore
    publisher: EventPublisher
    inventory: BrokerInventory
    enricher: Enricher
    pid: int = field(default_factory=os.getpid)


_runtime: WorkerRuntime | None = None


def runtime() -> WorkerRuntime:
    global _runtime
    if _runtime is None:
        _runtime = build_runtime(get_settings())
    return _runtime


def build_runtime(settings: Settings) -> WorkerRuntime:
    from workers.celery_app import celery_app

    engine = create_sync_engine(settings)
    return WorkerRuntime(
        settings=settings,
        engine=engine,
        sessions=sync_sessionmaker(engine),
        store=open_image_store(settings),
        publisher=EventPublisher(celery_app),
        inventory=inventory_of(celery_app),
        enricher=Enricher(settings.geoip_db, settings.keep_anonymized_ip),
    )


def attempts(settings: Settings) -> Attempts:
    return Attempts(max=settings.render_max_attempts)


def lost_after(settings: Settings) -> LostAfter:
    return LostAfter(
        unclaimed=timedelta(seconds=settings.render_republish_after_seconds),
        time_limit=timedelta(seconds=settings.task_time_limit_seconds),
    )


def forget_inherited_runtime() -> None:
    """In a freshly forked pool process, drop the parent's resources (without closing its connections)."""
    global _runtime
    if _runtime is not None and _runtime.pid != os.getpid():
        _runtime.engine.dispose(close=False)
        _runtime = None


def use_runtime(new: WorkerRuntime | None) -> None:
    """Replace the process's resources (tests point an in-process worker at their database)."""
    global _runtime
    if _runtime is not None:
        _runtime.engine.dispose()
    _runtime = new
