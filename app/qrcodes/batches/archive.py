"""A batch's zip, written while it is sent: every image in the batch's formats, then manifest.csv.

Built on request, not stored: reading the images back and zipping them costs about what sending them
does, a stored copy would have to be kept in step with codes deleted later, and nothing has to notice
"the last chunk just finished". zipfile writes into a sink that is emptied every _FLUSH_AT bytes, so
memory holds one image and one chunk whatever the batch's size (ZIP64 is used past 4 GiB). PNG and PDF are
stored as they are (already compressed); SVG, EPS and the manifest are deflated. Every entry carries the
batch's creation time, so the same batch gives the same bytes every time.

manifest.csv (UTF-8 with a BOM, for spreadsheets): every row of the request in row order, rejected
ones too, with the code's id, kind, status, content, short link and target, title, error, and the name
of its file in each format (empty where there is none).
"""

from __future__ import annotations

import csv
import io
import uuid
import zipfile
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from app.kit.spreadsheet import safe_cell
from app.kit.storage import ImageStore, image_key
from app.links.service import short_url
from app.qrcodes.batches.repository import ManifestEntry

_FLUSH_AT = 256 * 1024
_ALREADY_COMPRESSED = frozenset({"png", "pdf"})
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("row", "id", "kind", "status", "content", "short_url", "target_url", "title", "error")


def file_name(row: int, fmt: str) -> str:
    return f"{row:05d}.{fmt}"


class _Sink(io.RawIOBase):
    """Where zipfile writes: collects bytes until taken. It can tell but not seek, so zipfile writes each
    entry's sizes after its data (data descriptors) instead of going back for them."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.size = 0
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self.size += len(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data, self._chunks, self.size = b"".join(self._chunks), [], 0
        return data


def stream(
    store: ImageStore,
    workspace_id: uuid.UUID,
    entries: list[ManifestEntry],
    rejected: list[dict[str, Any]],
    formats: list[str],
    public_base_url: str,
    created_at: datetime,
) -> Iterator[bytes]:
    stamp = created_at.timetuple()[:6]
    lines: dict[int, list[Any]] = {}
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        for entry in entries:
            names, error = [], entry.error
            for fmt in formats:
                name = ""
                etag = entry.images.get(fmt) if entry.status == "ready" else None
                data = store.get(image_key(workspace_id, entry.code_id, etag, fmt)) if etag else None
                if data is not None:
                    name = file_name(entry.row, fmt)
                    archive.writestr(_info(name, fmt, stamp), data)
                elif etag:
                    error = f"the {fmt} image is missing from storage"
                names.append(name)
                if sink.size >= _FLUSH_AT:
                    yield sink.take()
            short = short_url(public_base_url, entry.slug) if entry.slug else ""
            lines[entry.row] = [
                entry.row, entry.code_id, entry.kind, entry.status, entry.content, short,
                entry.target_url or "", entry.title or "", error or "", *names,
            ]
        for row, messages in _rejected_rows(rejected).items():
            lines[row] = [row, "", "", "rejected", "", "", "", "", messages, *[""] * len(formats)]
        archive.writestr(_info(MANIFEST, "csv", stamp), _manifest(lines, formats))
    yield sink.take()


def _info(name: str, fmt: str, stamp: tuple[int, ...]) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=stamp)  # type: ignore[arg-type]
    info.compress_type = zipfile.ZIP_STORED if fmt in _ALREADY_COMPRESSED else zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16  # rw-r--r--, not the 000 a bare ZipInfo would give on unzip
    return info


def _rejected_rows(rejected: list[dict[str, Any]]) -> dict[int, str]:
    rows: dict[int, list[str]] = {}
    for error in rejected:
        rows.setdefault(error["row"], []).append(f"{error['field']}: {error['message']}")
    return {row: "; ".join(messages) for row, messages in rows.items()}


def _manifest(lines: dict[int, list[Any]], formats: list[str]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([*MANIFEST_COLUMNS, *(f"{fmt}_file" for fmt in formats)])
    writer.writerows([safe_cell(cell) for cell in lines[row]] for row in sorted(lines))
    return text.getvalue().encode("utf-8-sig")
