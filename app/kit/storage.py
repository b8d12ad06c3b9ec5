"""Where rendered images live. A local directory by default; keys are content-addressed, so readers never
see a half-written file, and a key once recorded on a code never changes under it."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Protocol


class ImageStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def path(self, key: str) -> Path | None: ...
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
        path = self.path(key)
        return path.read_bytes() if path else None

    def path(self, key: str) -> Path | None:
        path = self._resolve(key)
        return path if path.is_file() else None

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


def image_key(workspace_id: object, code_id: object, etag: str, fmt: str) -> str:
    return f"{workspace_id}/{code_id}/{etag}.{fmt}"


def code_prefix(workspace_id: object, code_id: object) -> str:
    return f"{workspace_id}/{code_id}"
