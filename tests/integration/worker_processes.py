"""Real `qrflow worker` and `qrflow beat` processes for the fault tests, on a broker database of their
own (the in-process test worker does not read it) and on the backend's database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis
from celery import Celery
from sqlalchemy import select

from app.kit.broker_inventory import RabbitMQInventory
from app.kit.db import create_sync_engine, sync_sessionmaker


def celery_on(broker_url: str, result_backend: str | None = None) -> Celery:
    """The real configuration, on another broker (and a Redis broker's results in it)."""
    import celeryconfig

    app = Celery("qrflow-fault-test")
    app.config_from_object("celeryconfig")
    app.conf.update(celeryconfig.broker_settings(broker_url))
    app.conf.broker_url = broker_url
    app.conf.result_backend = result_backend or broker_url
    return app


class Processes:
    """`rabbitmq`: the URL of a RabbitMQ virtual host to use as the broker, instead of the Redis database."""

    def __init__(self, backend, redis_url: str, db: int, tmp_path: Path, rabbitmq: str | None = None, **env: str):
        self.redis_url = redis_url.rsplit("/", 1)[0] + f"/{db}"
        self.broker_url = rabbitmq or self.redis_url
        # Whatever an earlier test left there (a killed worker's unacknowledged messages) is not ours.
        with redis.Redis.from_url(self.redis_url) as broker:
            broker.flushdb()
        self.celery = celery_on(self.broker_url, self.redis_url)
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "QRFLOW_REDIS_URL": self.redis_url,
            "QRFLOW_BROKER_URL": rabbitmq or "",
            "QRFLOW_DATABASE_URL": backend.settings.database_url,
            "QRFLOW_DATA_DIR": str(backend.settings.data_dir),
            "QRFLOW_LOG_FORMAT": "json",
            **env,
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.backend = backend

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"{args[0]}-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "app.cli", *args], env=self.env, stdout=log, stderr=log)
        log.close()
        self.processes.append(process)
        return process

    def worker(self, queues: str = "qr", concurrency: int = 2) -> subprocess.Popen[bytes]:
        return self.start("worker", "-Q", queues, "-c", str(concurrency))

    def beat(self, name: str = "beat") -> subprocess.Popen[bytes]:
        """Beat, whose schedule file goes to a directory of the test's own (one per name: a second beat
        keeps a schedule of its own, as on another host)."""
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "beat"],
            env={**self.env, "QRFLOW_DATA_DIR": str(self.tmp_path / name)},
            stdout=(log := (self.tmp_path / f"{name}.log").open("wb")),
            stderr=log,
        )
        log.close()
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in sorted(self.tmp_path.glob("*.log")))

    def logged_events(self, event: str) -> list[dict]:
        found = []
        for line in self.logs().splitlines():
            if line.startswith("{") and f'"{event}"' in line:
                record = json.loads(line)
                if record.get("event") == event:
                    found.append(record)
        return found

    def queue_length(self, *queues: str) -> int:
        """Messages waiting in these queues (default: where renders wait, qr and qr_batch)."""
        if self.broker_url != self.redis_url:
            inventory = RabbitMQInventory(self.celery)
            return sum(inventory.waiting(queue) for queue in queues or ("qr", "qr_batch"))
        with redis.Redis.from_url(self.broker_url) as broker:
            return sum(broker.llen(queue) for queue in queues or ("qr", "qr_batch"))

    def wait_for_log(self, needle: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.logs():
            assert time.monotonic() < deadline, f"{needle!r} never logged"
            time.sleep(0.2)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def render_rows(backend, code_ids: list[uuid.UUID | str]) -> dict[uuid.UUID, dict]:
    """Each code's status, error and render bookkeeping, read from the database."""
    from app.qrcodes.models import QRCode

    ids = [uuid.UUID(str(code_id)) for code_id in code_ids]
    engine = create_sync_engine(backend.settings)
    try:
        with sync_sessionmaker(engine)() as session:
            rows = session.execute(
                select(QRCode.id, QRCode.status, QRCode.error, QRCode.render_attempts, QRCode.render_claimed_by).where(
                    QRCode.id.in_(ids)
                )
            ).all()
    finally:
        engine.dispose()
    return {
        id: {"status": status, "error": error, "attempts": attempts, "claimed": claimed}
        for id, status, error, attempts, claimed in rows
    }
