"""Helpers of the batch tests (test_batches_api.py, test_batch_faults.py, test_batch_cli.py)."""

from __future__ import annotations

import csv
import io
import time
import uuid
import zipfile

from sqlalchemy import func, select

from app.kit.db import create_sync_engine, sync_sessionmaker
from app.kit.redis_server import free_port

CSV = {"Content-Type": "text/csv"}


def csv_body(header: list[str], rows: list[list[object]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def mixed_rows(n: int, tag: str) -> tuple[list[str], list[list[object]]]:
    """n rows of five kinds, every content distinct, as a CSV's header and rows. Scale 4: small images
    draw and decode faster, and the tests are about the rows, not the pixels."""
    header = ["kind", "url", "text", "ssid", "password", "number", "lat", "lng", "title", "tags", "scale"]
    rows: list[list[object]] = []
    for i in range(n):
        kind = ("url", "text", "wifi", "phone", "geo")[i % 5]
        row: list[object] = [kind, "", "", "", "", "", "", "", f"{tag} {i}", f"{tag};batch", "4"]
        if kind == "url":
            row[1] = f"https://example.com/{tag}/{i}"
        elif kind == "text":
            row[2] = f"{tag} text {i} ✓"
        elif kind == "wifi":
            row[3:5] = [f"net-{tag}-{i}", f"pw{i:06d}"]
        elif kind == "phone":
            row[5] = f"+1 555 {i:07d}"
        else:
            row[6:8] = [f"{(i % 180) - 89.5}", f"{(i % 360) - 179.25}"]
        rows.append(row)
    return header, rows


def post_batch(gateway, caller, body: bytes | dict, query: str = "", headers: dict | None = None):
    extra = {**caller.headers, **(headers or {})}
    if isinstance(body, dict):
        return gateway.post(f"/v1/batches{query}", json=body, headers=extra)
    return gateway.post(f"/v1/batches{query}", content=body, headers={**CSV, **extra})


def wait_until_finished(gateway, caller, batch_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        batch = gateway.get(f"/v1/batches/{batch_id}", headers=caller.headers).json()
        if batch["status"] in ("done", "failed"):
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} not finished after {timeout}s: {batch}")
        time.sleep(0.2)


def read_archive(gateway, caller, batch: dict) -> tuple[zipfile.ZipFile, list[dict[str, str]]]:
    response = gateway.get(batch["archive"], headers=caller.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode("utf-8-sig"))))
    return archive, manifest


def count(backend, model, **where) -> int:
    engine = create_sync_engine(backend.settings)
    try:
        with sync_sessionmaker(engine)() as session:
            query = select(func.count()).select_from(model)
            for name, value in where.items():
                query = query.where(getattr(model, name) == value)
            return session.scalar(query)
    finally:
        engine.dispose()


def table_counts(backend) -> dict[str, int]:
    from app.links.models import Link
    from app.qrcodes.batches.models import Batch, BatchItem
    from app.qrcodes.models import QRCode, QRCodeTag

    return {m.__tablename__: count(backend, m) for m in (Batch, BatchItem, QRCode, QRCodeTag, Link)}


class Recorder:
    """A publisher that keeps what it is given; `accept` says whether the broker took it."""

    def __init__(self, accept: bool) -> None:
        self.accept = accept
        self.events: list = []

    def publish(self, event) -> bool:
        self.events.append(event)
        return self.accept


def unpublished_batch(gateway, caller, rows: list[list[str]]) -> dict:
    """A batch of text codes whose chunk messages never reach a broker (nothing listens on the port)."""
    from tests.integration.test_faults import celery_on, gateway_publishing_to

    with gateway_publishing_to(gateway, celery_on(f"redis://127.0.0.1:{free_port()}/0")):
        response = post_batch(gateway, caller, csv_body(["kind", "text"], rows))
    assert response.status_code == 202, response.text
    return response.json()


def batch_code_ids(backend, batch_id: str) -> list[uuid.UUID]:
    from app.qrcodes.batches.models import BatchItem

    engine = create_sync_engine(backend.settings)
    try:
        with sync_sessionmaker(engine)() as session:
            query = select(BatchItem.code_id).where(BatchItem.batch_id == uuid.UUID(batch_id)).order_by(BatchItem.row)
            return list(session.scalars(query))
    finally:
        engine.dispose()
