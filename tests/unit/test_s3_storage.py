"""The S3 image store (app/kit/s3_storage.py) on a real S3 server (SeaweedFS, tests/s3_server.py), what it
makes of a server that is away or refuses, and how settings choose a store."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from pydantic import ValidationError

from app.kit.redis_server import free_port
from app.kit.s3_storage import CACHE_CONTROL, S3ImageStore
from app.kit.settings import Settings
from app.kit.storage import LocalImageStore, StoreUnavailable, open_image_store
from tests.s3_server import BUCKET, REGION


def settings_for(server, prefix: str, endpoint: str | None = None) -> Settings:
    return Settings(
        storage_url=f"s3://{BUCKET}/{prefix}", s3_endpoint_url=endpoint or server.endpoint, s3_region=REGION
    )


@pytest.fixture
def store(s3_server) -> S3ImageStore:
    """A store under a prefix of its own, so tests never see each other's objects."""
    return open_image_store(settings_for(s3_server, f"unit-{uuid.uuid4().hex[:8]}/images"))


def names(server, store: S3ImageStore) -> list[str]:
    listed = server.client().list_objects_v2(Bucket=BUCKET, Prefix=store.prefix + "/")
    return sorted(item["Key"].removeprefix(store.prefix + "/") for item in listed.get("Contents", []))


def test_settings_choose_the_store():
    assert isinstance(open_image_store(Settings()), LocalImageStore)
    store = open_image_store(Settings(storage_url="s3://images/qr/prod/", s3_endpoint_url="http://127.0.0.1:1"))
    assert isinstance(store, S3ImageStore) and (store.bucket, store.prefix) == ("images", "qr/prod")
    assert open_image_store(Settings(storage_url="s3://images", s3_region=REGION)).prefix == ""
    for wrong in ("images", "s3://", "s3:///prefix", "file:///srv/images"):
        with pytest.raises(ValidationError, match="s3://bucket"):
            Settings(storage_url=wrong)


def test_objects_are_put_read_and_streamed_under_the_prefix_with_their_media_type_and_cache_headers(s3_server, store):
    image = bytes(range(256)) * 1000  # several chunks
    store.put("w/c/abc.png", image)
    store.put("w/c/abc.svg", b"<svg/>")

    assert store.get("w/c/abc.png") == image
    opened = store.open("w/c/abc.png")
    assert opened.size == len(image) and b"".join(opened.chunks) == image
    head = s3_server.client().head_object(Bucket=BUCKET, Key=f"{store.prefix}/w/c/abc.svg")
    assert (head["ContentType"], head["CacheControl"]) == ("image/svg+xml", CACHE_CONTROL)
    assert store.get("w/c/missing.png") is None and store.open("w/c/missing.png") is None


def test_keep_only_and_delete_prefix_touch_nothing_outside_the_code(s3_server, store):
    for key in ("w/c/new.png", "w/c/killed-attempt.pdf", "w/c2/neighbour.png", "w/other/kept.png"):
        store.put(key, b"image")

    store.keep_only("w/c", {"w/c/new.png"})
    assert names(s3_server, store) == ["w/c/new.png", "w/c2/neighbour.png", "w/other/kept.png"]

    store.delete_prefix("w/c")
    assert names(s3_server, store) == ["w/c2/neighbour.png", "w/other/kept.png"]
    store.keep_only("w/other", set())
    store.delete_prefix("w/never-written")
    assert names(s3_server, store) == ["w/c2/neighbour.png"]


def test_more_objects_than_one_listing_page_are_all_deleted(s3_server, store):
    with ThreadPoolExecutor(8) as pool:  # a listing page and a DeleteObjects call both stop at 1,000
        list(pool.map(lambda i: store.put(f"w/many/{i:04d}.png", b"x"), range(1005)))
    store.delete_prefix("w/many")
    assert names(s3_server, store) == []


def test_a_server_that_is_not_there_is_unavailable_not_missing():
    away = open_image_store(Settings(storage_url="s3://b/p", s3_endpoint_url=f"http://127.0.0.1:{free_port()}"))
    for call in (lambda: away.get("k"), lambda: away.open("k"), lambda: away.put("k", b"x"),
                 lambda: away.delete_prefix("w"), lambda: away.keep_only("w", {"w/k"})):  # fmt: skip
        with pytest.raises(StoreUnavailable) as raised:
            call()
        assert (raised.value.status, raised.value.headers) == (503, {"Retry-After": "5"})


@pytest.mark.parametrize(
    ("code", "status", "outcome"),
    [
        ("SlowDown", 503, StoreUnavailable),
        ("InternalError", 500, StoreUnavailable),
        ("AccessDenied", 403, ClientError),  # a misconfiguration: said as it is, not waited out
        ("NoSuchBucket", 404, ClientError),
    ],
)
def test_what_a_refusal_means(code, status, outcome):
    """Answers a live server gives only when it is in trouble or misconfigured: stubbed (botocore's Stubber)."""
    store = open_image_store(Settings(storage_url="s3://b/p", s3_endpoint_url="http://127.0.0.1:1"))
    with Stubber(store._client) as stub:
        stub.add_client_error("get_object", service_error_code=code, http_status_code=status)
        with pytest.raises(outcome):
            store.get("k")
        stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
        assert store.get("k") is None
