"""The image store on an S3-compatible object store (AWS S3, MinIO, SeaweedFS, Ceph RGW, Garage, R2…).

Through boto3: its credential chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE with
~/.aws/credentials or AWS_SHARED_CREDENTIALS_FILE, SSO, container and instance roles) is the one every S3
deployment is documented against, and it is the client S3-compatible servers test with. obstore would be
leaner, but its own chain reads no credentials file, and qrflow's calls are a handful of small objects per
render, where the client's speed is not what counts.

Objects keep the local store's keys under the URL's prefix (s3://bucket/prefix/<workspace>/<code>/<etag>.<fmt>),
each stored with its media type and the immutable Cache-Control the gateway answers with, so a CDN or a
reader of the bucket sees what API clients see. A store that does not answer (refused or timed-out
connections, 5xx, throttling) raises StoreUnavailable; a missing key is None; any other refusal (access
denied, no such bucket) is a misconfiguration and raises as it is.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from app.kit.storage import CHUNK_BYTES, StoredObject, StoreUnavailable

if TYPE_CHECKING:
    from app.kit.settings import Settings

log = structlog.get_logger(__name__)

CACHE_CONTROL = "private, max-age=31536000, immutable"
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
# Answers that mean "not now" rather than "never": waited out like a refused connection.
_NOT_NOW = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling"})
_DELETE_BATCH = 1000  # DeleteObjects' limit


class S3ImageStore:
    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ImageStore:
        bucket, _, prefix = settings.storage_url.removeprefix("s3://").partition("/")
        endpoint = settings.s3_endpoint_url or None
        config = Config(
            # A store that is down answers 503 to the image's client within seconds, and a render gives its
            # attempt back, rather than holding a thread for the default minute.
            connect_timeout=2,
            read_timeout=10,
            retries={"mode": "standard", "max_attempts": 2},
            max_pool_connections=32,
            # Other S3 servers (MinIO, SeaweedFS, Ceph) are reached by path (http://host:9000/bucket/key): a
            # bucket's DNS name under a private endpoint's host would not resolve. AWS keeps its default.
            s3={"addressing_style": "path"} if endpoint else None,
            # Checksums only where S3 requires them: the CRC32 headers boto3 sends by default since 1.36 are
            # refused by several S3-compatible servers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint, region_name=settings.s3_region or None, config=config
        )
        return cls(client, bucket, prefix)

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        with _outage_as_unavailable("put"):
            self._client.put_object(
                Bucket=self.bucket, Key=self._name(key), Body=data, ContentType=media_type, CacheControl=CACHE_CONTROL
            )

    def get(self, key: str) -> bytes | None:
        with _outage_as_unavailable("get"):
            response = self._get_object(key)
            if response is None:
                return None
            body = response["Body"]
            try:
                return body.read()
            finally:
                body.close()

    def open(self, key: str) -> StoredObject | None:
        with _outage_as_unavailable("get"):
            response = self._get_object(key)
        if response is None:
            return None
        return StoredObject(response["ContentLength"], _chunks(response["Body"]))

    def delete_prefix(self, prefix: str) -> None:
        self._delete(list(self._list(prefix)))

    def keep_only(self, prefix: str, keys: set[str]) -> None:
        """Delete every object under `prefix` but `keys` (a PUT is atomic: no temporaries to mind here)."""
        kept = {self._name(key) for key in keys}
        self._delete([name for name in self._list(prefix) if name not in kept])

    def _get_object(self, key: str) -> dict[str, Any] | None:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise

    def _list(self, prefix: str) -> Iterator[str]:
        # The trailing slash: code a/b must not take a/bc's objects with it.
        start = self._name(prefix).rstrip("/") + "/"
        with _outage_as_unavailable("list"):
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    yield item["Key"]

    def _delete(self, names: list[str]) -> None:
        for start in range(0, len(names), _DELETE_BATCH):
            batch = [{"Key": name} for name in names[start : start + _DELETE_BATCH]]
            with _outage_as_unavailable("delete"):
                response = self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if response.get("Errors"):
                first = response["Errors"][0]
                raise OSError(f"the store kept {len(response['Errors'])} objects, e.g. {first['Key']}: {first['Code']}")


def _chunks(body: Any) -> Iterator[bytes]:
    try:
        with _outage_as_unavailable("read"):
            yield from body.iter_chunks(CHUNK_BYTES)
    finally:
        body.close()


@contextmanager
def _outage_as_unavailable(operation: str) -> Iterator[None]:
    try:
        yield
    except (BotoConnectionError, HTTPClientError) as exc:
        log.warning("image_store_unreachable", operation=operation, error=type(exc).__name__)
        raise StoreUnavailable() from exc
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if status >= 500 or exc.response.get("Error", {}).get("Code") in _NOT_NOW:
            log.warning("image_store_unreachable", operation=operation, error=str(exc)[:200])
            raise StoreUnavailable() from exc
        raise
