"""Static files of the dashboard under content-hashed names, cached by browsers for a year.

A file's URL carries the first hex digits of its SHA-256 (`/app/static/js/app.3f9a1c0b2d4e.js`): a new
release changes the name of every file that changed, so `immutable` never serves a stale script.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

STATIC_DIR = Path(__file__).parent / "static"
URL_PREFIX = "/app/static/"
_IMMUTABLE = "public, max-age=31536000, immutable"
_DIGEST_LENGTH = 12


@dataclass(frozen=True)
class _Asset:
    path: Path
    media_type: str


class StaticAssets:
    """Maps a logical name (`vendor/htmx/htmx.min.js`) to its hashed URL, and serves the hashed URLs.

    Only the files found at start-up are served, by exact name: nothing a request names reaches the
    file system."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self._urls: dict[str, str] = {}
        self._files: dict[str, _Asset] = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            logical = path.relative_to(root).as_posix()
            hashed = _hashed_name(logical, hashlib.sha256(path.read_bytes()).hexdigest()[:_DIGEST_LENGTH])
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if media_type.startswith("text/") or media_type.endswith("javascript"):
                media_type += "; charset=utf-8"
            self._urls[logical] = URL_PREFIX + hashed
            self._files[hashed] = _Asset(path, media_type)

    def url(self, logical: str) -> str:
        """The hashed URL of a file under app/web/static/; a KeyError names a file that is not there."""
        return self._urls[logical]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app mounted at /app/static."""
        asset = self._files.get(scope["path"].removeprefix(URL_PREFIX.rstrip("/")).lstrip("/"))
        if asset is None or scope["method"] not in ("GET", "HEAD"):
            response: Response = Response("not found", status_code=404, media_type="text/plain")
        else:
            response = FileResponse(asset.path, media_type=asset.media_type, headers={"Cache-Control": _IMMUTABLE})
        await response(scope, receive, send)


def _hashed_name(logical: str, digest: str) -> str:
    path = PurePosixPath(logical)
    return str(path.with_name(f"{path.stem}.{digest}{path.suffix}"))
