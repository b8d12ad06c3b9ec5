"""Where rendered images and uploaded logos live: a local directory by default (one host), or an S3-compatible
object store (app/kit/s3_storage.py) that every host reaches. Keys are content-addressed, so readers never
see a half-written image, and a key once recorded on a code never changes under it.

Every method blocks (disk or network): the gateway calls them in a thread, never on its event loop.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from app.kit.errors import Unavailable

if TYPE_CHECKING:
    from app.kit.settings import Settings

# Read and sent in pieces this large: an image is a few KiB to a few MiB.
CHUNK_BYTES = 64 * 1024


class StoreUnavailable(Unavailable):
    """The store did not answer, or answered that it cannot now (timeouts, refused connections, 5xx): a
    fault to wait out. The gateway answers 503 with Retry-After; a render gives its attempt back and retries."""

    def __init__(self, message: str = "the image store is unreachable; retry shortly") -> None:
        super().__init__(message, retry_after=5)


@dataclass(frozen=True)
class StoredObject:
    """An object opened for reading: its size, and its bytes as they arrive (a generator: the file or
    connection is closed once it is read to the end, or closed, or collected)."""

    size: int
    chunks: Iterator[bytes]


class ImageStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def open(self, key: str) -> StoredObject | None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def keep_only(self, prefix: str, keys: set[str]) -> None: ...


_TEMPORARY_LIFETIME_SECONDS = 600


class LocalImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _resolve(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key escapes the store: {key!r}")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._resolve(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes | None:
        try:
            return self._resolve(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None

    def open(self, key: str) -> StoredObject | None:
        try:
            file = self._resolve(key).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            return None
        return StoredObject(os.fstat(file.fileno()).st_size, _read_and_close(file))

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._resolve(prefix), ignore_errors=True)

    def keep_only(self, prefix: str, keys: set[str]) -> None:
        """Delete what under `prefix` is not one of `keys`, and temporaries left by a killed writer (old
        enough that no live writer can still be renaming them). Nothing kept: the whole prefix goes."""
        if not keys:
            self.delete_prefix(prefix)
            return
        kept = {self._resolve(key) for key in keys}
        stale = time.time() - _TEMPORARY_LIFETIME_SECONDS
        for path in self._resolve(prefix).glob("*"):
            temporary = path.name.startswith(".tmp-")
            try:
                if (temporary and path.stat().st_mtime < stale) or (not temporary and path not in kept):
                    path.unlink()
            except FileNotFoundError:  # another sweep of the same code got there first
                pass


def _read_and_close(file) -> Iterator[bytes]:  # noqa: ANN001 - a binary file
    with file:
        while chunk := file.read(CHUNK_BYTES):
            yield chunk


def open_image_store(settings: Settings) -> ImageStore:
    """The store the settings name: QRFLOW_STORAGE_URL=s3://bucket/prefix, or data_dir/images."""
    if not settings.storage_url:
        return LocalImageStore(settings.images_dir)
    from app.kit.s3_storage import S3ImageStore  # boto3 is imported only where it is used

    return S3ImageStore.from_settings(settings)


def image_key(workspace_id: object, code_id: object, etag: str, fmt: str) -> str:
    return f"{workspace_id}/{code_id}/{etag}.{fmt}"


def code_prefix(workspace_id: object, code_id: object) -> str:
    return f"{workspace_id}/{code_id}"
