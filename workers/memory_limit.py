"""Each pool process's address space is bounded (RLIMIT_AS, QRFLOW_WORKER_MAX_MEMORY_MB): a render that
would need more fails there with MemoryError instead of growing until the host's OOM killer picks a
victim, which may be the gateway or Redis. The render cost limit (app/qrcodes/render_cost.py) keeps valid
codes far below it; this is the bound for what an estimate misses.

RLIMIT_AS rather than Celery's worker_max_memory_per_child: that one only replaces a process after its
task finished, which bounds a leak, not one render's peak.
"""

from __future__ import annotations

import os
import resource

import structlog
from celery import signals

from app.kit.settings import get_settings

log = structlog.get_logger(__name__)


_worker_pid: int | None = None


@signals.worker_init.connect
def _note_the_worker_process(**_: object) -> None:
    global _worker_pid
    _worker_pid = os.getpid()


@signals.worker_process_init.connect
def _bound_the_pool_process(**_: object) -> None:
    # A solo pool sends this signal too, in the worker's own process (the test suite's in-process worker:
    # pytest's): the bound is for prefork children, which the worker replaces when one dies of it; a
    # lowered hard limit could never be raised again in a process that lives on.
    if os.getpid() == _worker_pid:
        return
    limit_mb = get_settings().worker_max_memory_mb
    if limit_mb:
        limit = limit_mb * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit if hard == resource.RLIM_INFINITY else min(limit, hard)))
        log.info("pool_process_memory_limited", limit_mb=limit_mb)
