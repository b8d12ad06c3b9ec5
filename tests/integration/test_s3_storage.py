"""Images on an S3-compatible store: a real S3 server (SeaweedFS, tests/s3_server.py), the real worker and
the gateway, on SQLite and PostgreSQL. The whole path (create, render, fetch, batch, archive, logo, delete)
and a store that goes down and comes back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from celery import signals
from fastapi.testclient import TestClient

from app.gateway.main import create_app
from app.kit.settings import Settings
from tests.conftest import wait_until_rendered
from tests.decoding import decode_png, decode_svg
from tests.integration.batch_helpers import post_batch, read_archive, wait_until_finished
from tests.integration.test_batches_api import upload_logo
from tests.integration.test_qrcodes_api import created
from tests.integration.worker_processes import render_rows
from tests.s3_server import BUCKET, REGION


@pytest.fixture(scope="module")
def s3_settings(backend, s3_server) -> Settings:
    """The backend's settings with images under a prefix of this backend's own in the test bucket."""
    prefix = f"{backend.name}-{uuid.uuid4().hex[:8]}"
    return backend.settings.model_copy(
        update={"storage_url": f"s3://{BUCKET}/{prefix}", "s3_endpoint_url": s3_server.endpoint, "s3_region": REGION}
    )


@pytest.fixture(scope="module")
def s3_gateway(backend, worker, s3_settings) -> Iterator[TestClient]:
    """The gateway and the in-process worker, both on the S3 store, for this module's tests."""
    from workers.runtime import build_runtime, use_runtime

    use_runtime(build_runtime(s3_settings))
    try:
        with TestClient(create_app(s3_settings)) as client:
            yield client
    finally:
        use_runtime(build_runtime(backend.settings))


# How soon a task waiting out the outage runs again once the store is back: within the longest backoff
# (120 s, workers/retries.py) after its last failure, and the work, with a margin for a loaded host.
BACK_WITHIN = 200
BEFORE = {"kind": "text", "data": {"text": "rendered before the outage"}}


def wait_for_retries(retried: list[str], task: str, times: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while retried.count(task) < times:
        assert time.monotonic() < deadline, f"{task} retried {retried.count(task)} times, not {times}"
        time.sleep(0.1)


def objects(s3_server, s3_settings) -> dict[str, dict]:
    """Every object of the store (keys relative to its prefix) → its head."""
    prefix = s3_settings.storage_url.removeprefix(f"s3://{BUCKET}/") + "/"
    client = s3_server.client()
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"].removeprefix(prefix)] = client.head_object(Bucket=BUCKET, Key=item["Key"])
    return found


def test_create_render_fetch_batch_archive_and_delete_on_s3(s3_gateway, alice, s3_server, s3_settings):
    client = s3_gateway
    code = wait_until_rendered(client, alice, created(client, alice, {"kind": "text", "data": {"text": "on s3"}})["id"])
    assert code["status"] == "ready"
    stored = objects(s3_server, s3_settings)
    mine = {key: head for key, head in stored.items() if f"/{code['id']}/" in key}
    assert len(mine) == 4  # png, svg, pdf, eps: content-addressed, as on disk
    assert not (s3_settings.images_dir).exists() or not any(s3_settings.images_dir.rglob(f"*{code['id']}*"))
    png_key = next(key for key in mine if key.endswith(".png"))
    assert mine[png_key]["ContentType"] == "image/png"
    assert mine[png_key]["CacheControl"] == "private, max-age=31536000, immutable"

    image = client.get(code["images"]["png"], headers=alice.headers)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.headers["etag"] == f'"{png_key.rsplit("/", 1)[1].removesuffix(".png")}"'
    assert image.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert int(image.headers["content-length"]) == len(image.content)
    assert decode_png(image.content) == ["on s3"]
    again = client.get(code["images"]["png"], headers={**alice.headers, "If-None-Match": image.headers["etag"]})
    assert again.status_code == 304
    assert decode_svg(client.get(code["images"]["svg"], headers=alice.headers).content) == ["on s3"]
    rescaled = client.get(code["images"]["png"] + "?scale=2", headers=alice.headers)
    assert rescaled.status_code == 200 and decode_png(rescaled.content) == ["on s3"]

    # A logo is stored there too, and read from there by the worker that draws it.
    logo_id = upload_logo(client, alice)
    assert [key for key in objects(s3_server, s3_settings) if key.endswith(f"/logos/{logo_id}/logo.png")]
    with_logo = {"kind": "text", "data": {"text": "logo on s3"}, "style": {"error": "H", "logo": logo_id}}
    drawn = wait_until_rendered(client, alice, created(client, alice, with_logo)["id"])
    assert drawn["status"] == "ready", drawn
    assert decode_png(client.get(drawn["images"]["png"], headers=alice.headers).content) == ["logo on s3"]

    items = [{"kind": "text", "data": {"text": f"batch row {i}"}} for i in range(12)]
    response = post_batch(client, alice, {"items": items, "formats": ["png", "svg"]})
    assert response.status_code == 202, response.text
    batch = wait_until_finished(client, alice, response.json()["id"])
    assert batch["done"] == 12
    archive, manifest = read_archive(client, alice, batch)
    assert len(archive.namelist()) == 25
    for line in manifest:
        assert decode_png(archive.read(line["png_file"])) == decode_svg(archive.read(line["svg_file"])) == [
            line["content"]
        ]

    assert client.delete(f"/v1/qrcodes/{code['id']}", headers=alice.headers).status_code == 204
    assert not [key for key in objects(s3_server, s3_settings) if f"/{code['id']}/" in key]
    assert [key for key in objects(s3_server, s3_settings) if f"/{drawn['id']}/" in key]  # its neighbour stays


def test_a_store_that_is_down_retries_the_render_answers_503_and_the_code_is_ready_once_it_is_back(
    s3_gateway, alice, backend, s3_server, s3_settings
):
    client = s3_gateway
    before = wait_until_rendered(client, alice, created(client, alice, BEFORE)["id"])
    one_row = {"items": [{"kind": "text", "data": {"text": "in a batch"}}]}
    batch = wait_until_finished(client, alice, post_batch(client, alice, one_row).json()["id"])
    retried: list[str] = []
    on_retry = lambda request, **_: retried.append(request.task)  # noqa: E731
    signals.task_retry.connect(on_retry, weak=False)
    s3_server.stop()
    try:
        image = client.get(before["images"]["png"], headers=alice.headers)
        assert image.status_code == 503, image.text
        assert image.headers["retry-after"] == "5"
        assert image.json()["code"] == "unavailable"
        archive = client.get(batch["archive"], headers=alice.headers)
        assert archive.status_code == 503 and archive.headers["retry-after"] == "5", archive.text

        during = created(client, alice, {"kind": "text", "data": {"text": "rendered after the outage"}})
        rows = [{"kind": "text", "data": {"text": f"batch row {i} after the outage"}} for i in range(3)]
        batch_during = post_batch(client, alice, {"items": rows}).json()
        # Deleted while its images cannot be: the code is deleted, a worker deletes them once the store is back.
        assert client.delete(f"/v1/qrcodes/{before['id']}", headers=alice.headers).status_code == 204
        # As many failed renders as a code has attempts (QRFLOW_RENDER_MAX_ATTEMPTS): each gave its attempt
        # back, or the last would have failed the code instead of retrying.
        wait_for_retries(retried, "qrcodes.render", times=s3_settings.render_max_attempts)
        wait_for_retries(retried, "qrcodes.render_batch", times=1)
        wait_for_retries(retried, "qrcodes.delete_images", times=1)
        # Not ready without its images, and not failed.
        assert client.get(f"/v1/qrcodes/{during['id']}", headers=alice.headers).json()["status"] == "pending"
    finally:
        signals.task_retry.disconnect(on_retry)
        s3_server.start()
    # Retries back off (2 s doubling, with jitter): the next one after the outage renders it.
    ready = wait_until_rendered(client, alice, during["id"], timeout=BACK_WITHIN)
    assert ready["status"] == "ready", ready
    assert decode_png(client.get(ready["images"]["png"], headers=alice.headers).content) == [ready["content"]]
    row = render_rows(backend, [during["id"]])[uuid.UUID(during["id"])]
    assert (row["status"], row["attempts"], row["claimed"]) == ("ready", 1, None)  # only the one that drew it
    finished = wait_until_finished(client, alice, batch_during["id"], timeout=BACK_WITHIN)
    assert (finished["status"], finished["done"]) == ("done", 3), finished
    archive, manifest = read_archive(client, alice, finished)
    assert [decode_png(archive.read(line["png_file"])) for line in manifest] == [[line["content"]] for line in manifest]
    deadline = time.monotonic() + BACK_WITHIN
    while [key for key in objects(s3_server, s3_settings) if f"/{before['id']}/" in key]:
        assert time.monotonic() < deadline, "the deleted code's images are still in the store"
        time.sleep(0.5)


@pytest.mark.e2e
def test_prefork_worker_processes_configured_by_the_environment_render_into_the_store(
    s3_gateway, alice, backend, s3_server, s3_settings, redis_url, tmp_path
):
    """`qrflow worker` as deployed: settings and credentials from the environment, boto3's client made in
    each pool process after the fork, and no data directory shared with the gateway."""
    from tests.integration.test_faults import gateway_publishing_to
    from tests.integration.worker_processes import Processes

    platform = Processes(
        backend,
        redis_url,
        db=14,
        tmp_path=tmp_path,
        QRFLOW_DATA_DIR=str(tmp_path / "another-host"),
        QRFLOW_STORAGE_URL=s3_settings.storage_url,
        QRFLOW_S3_ENDPOINT_URL=s3_server.endpoint,
        QRFLOW_S3_REGION=REGION,
        **s3_server.credentials,
    )
    try:
        platform.worker("qr", concurrency=2)
        platform.wait_for_log("ready.")
        with gateway_publishing_to(s3_gateway, platform.celery):
            ids = [created(s3_gateway, alice, {"kind": "text", "data": {"text": f"pool {i}"}})["id"] for i in range(6)]
        codes = [wait_until_rendered(s3_gateway, alice, code_id, timeout=120) for code_id in ids]
    finally:
        platform.stop()
    assert [code["status"] for code in codes] == ["ready"] * 6
    for code in codes:
        assert decode_png(s3_gateway.get(code["images"]["png"], headers=alice.headers).content) == [code["content"]]
    assert not (tmp_path / "another-host" / "images").exists()
