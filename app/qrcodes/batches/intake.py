"""A batch request, read: JSON items or CSV rows → the codes to insert, and every bad row's errors.

Pure CPU, no database: the gateway runs it in a thread, so a 10,000-row batch does not stall its event
loop (nor, on SQLite, its single connection). Each row becomes a code through service.new_code, the same
function POST /v1/qrcodes uses, so a code is the same whichever way it was made.

Row numbers are the ones the client sees: a JSON item's position counted from 1; a CSV record's first
line, the header being line 1 (so the first data row is 2, as in a spreadsheet).

CSV: UTF-8 (a BOM is ignored), a header row naming the columns, one code per record; blank lines are
skipped and an empty cell is an absent field. Columns: `kind`; the kind's data fields (`url`, `text`,
`ssid`, `password`, …); the request's own fields (`title`, `tags` separated by `;`, `slug`, `dynamic`, …);
style fields (`error`, `scale`, `dark`, …). `data.NAME` and `style.NAME` say which is meant where a name
is both (a vCard's `data.title` is the person's job title; `title` is the code's). A non-empty cell in a
column that does not apply to the row's kind is an error, like an unknown field in JSON.
"""

from __future__ import annotations

import csv
import io
import json
import typing
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from app.kit.db import new_id
from app.kit.errors import DomainError, Invalid, UnsupportedMediaType
from app.qrcodes.models import QRCode
from app.qrcodes.schemas import IMAGE_FORMATS, CreateCode
from app.qrcodes.service import new_code
from app.qrcodes.style import Style

MAX_ITEMS = 10_000
# A header names each field once: every kind's fields with their data./style. spellings are a few hundred.
MAX_COLUMNS = 1_000
# The batch resource lists this many errors at most (errors_total counts them all; the archive's manifest.csv
# has every row): it is polled, and a 202 over 1 MiB would not be kept for Idempotency-Key. A 422 refusing a
# batch lists as many (its message gives the count): a 30,000-column header made a 3 MB answer.
MAX_LISTED_ERRORS = 1000
DEFAULT_FORMATS = ("png", "svg")
# Errors are for people: a few hundred characters say what is wrong; an echo of a huge input does not.
_MAX_MESSAGE = 300

_CREATE = TypeAdapter(CreateCode)
# kind → its create model (CreateURLCode, …), read from the union itself so new kinds need nothing here.
MODELS: dict[str, type[BaseModel]] = {
    typing.get_args(model.model_fields["kind"].annotation)[0]: model
    for model in typing.get_args(typing.get_args(CreateCode)[0])
}
KINDS = tuple(MODELS)
_STYLE_FIELDS = frozenset(Style.model_fields)


MEDIA_TYPES: dict[str, Literal["json", "csv"]] = {"application/json": "json", "text/csv": "csv"}


def media_type(content_type: str | None) -> Literal["json", "csv"]:
    """What the body is, from its Content-Type. Not multipart: a form upload's boundary changes on every
    retry, so the same file would not be the same request for Idempotency-Key (which compares bodies)."""
    essence = (content_type or "").split(";", 1)[0].strip().lower()
    if essence not in MEDIA_TYPES:
        raise UnsupportedMediaType(
            "send JSON ({\"items\": [...]}) as application/json, or a CSV file as the body with "
            "Content-Type: text/csv (curl --data-binary @codes.csv)",
            field="Content-Type",
        )
    return MEDIA_TYPES[essence]


class InvalidRows(Invalid):
    """422 `validation_error`, with one entry per bad field of every bad row."""

    code = "validation_error"

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.details = errors


@dataclass(frozen=True)
class RowError:
    row: int | None  # None: the request as a whole (its envelope, the CSV header)
    field: str
    type: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"field": self.field, "type": self.type, "message": self.message}
        return entry if self.row is None else {"row": self.row, **entry}


@dataclass
class Accepted:
    """The valid rows, as the rows to insert (ids set, so items and tags can refer to their code)."""

    rows: list[int] = field(default_factory=list)
    codes: list[QRCode] = field(default_factory=list)
    # What only the database can check: whether the slugs asked for are free (slug → its row), and
    # whether the logos are the workspace's own (row → logo id and the field that named it).
    slugs: dict[str, int] = field(default_factory=dict)
    logos: dict[int, tuple[uuid.UUID, str]] = field(default_factory=dict)

    def drop(self, rows: set[int]) -> None:
        kept = [(row, code) for row, code in zip(self.rows, self.codes, strict=True) if row not in rows]
        self.rows, self.codes = [row for row, _ in kept], [code for _, code in kept]
        self.slugs = {slug: row for slug, row in self.slugs.items() if row not in rows}
        self.logos = {row: logo for row, logo in self.logos.items() if row not in rows}


@dataclass
class Intake:
    source: Literal["json", "csv"]
    formats: list[str]
    accepted: Accepted
    errors: list[RowError]

    @property
    def rejected_rows(self) -> int:
        return len({e.row for e in self.errors})


def read(
    body: bytes,
    media_type: Literal["json", "csv"],
    query_formats: str | None,
    workspace_id: uuid.UUID,
    public_base_url: str,
) -> Intake:
    """Parse and validate the whole request. Whole-request faults (not JSON, no header, too many rows)
    raise InvalidRows at once; row faults are collected, for the caller to refuse or to report."""
    if media_type == "json":
        items, body_formats = _json_items(body)
        rows = (_json_row(i + 1, item) for i, item in enumerate(items))
    else:
        body_formats = None
        rows = _csv_items(body)
    formats = _formats(query_formats, body_formats)
    accepted, errors = Accepted(), []
    for row, item, columns in rows:
        if isinstance(item, list):  # the CSV reader's own errors for this row
            errors.extend(item)
            continue
        try:
            request = _CREATE.validate_python(item)
            code = new_code(workspace_id, request, public_base_url)
        except ValidationError as exc:
            errors.extend(_pydantic_errors(row, exc, columns))
            continue
        except DomainError as exc:  # the capacity check
            errors.append(RowError(row, _name(exc.field or "data", columns), exc.code, _clip(exc.message)))
            continue
        if code.link is not None and getattr(request, "slug", None):
            # A slug asked for twice in one batch: the later rows are refused.
            first = accepted.slugs.setdefault(code.link.slug, row)
            if first != row:
                message = f"slug {code.link.slug!r} is also on row {first}"
                errors.append(RowError(row, _name("slug", columns), "slug_taken", message))
                continue
        if request.style.logo is not None:
            accepted.logos[row] = (request.style.logo, _name("style.logo", columns))
        code.id = new_id()
        accepted.rows.append(row)
        accepted.codes.append(code)
    errors.sort(key=lambda e: e.row or 0)
    return Intake(media_type, formats, accepted, errors)


_BAD_HEADER = "the CSV's header row (line 1) is invalid; nothing was created"


def refuse(errors: list[RowError], *, why: str | None = None) -> InvalidRows:
    """The 422; it lists the first MAX_LISTED_ERRORS errors (its message says how many there are)."""
    rows = len({e.row for e in errors if e.row is not None})
    shown = "; ".join(
        (f"row {e.row}: " if e.row is not None else "") + f"{e.field}: {e.message}" for e in errors[:5]
    )
    more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
    head = why or (f"{rows} row(s) are invalid; nothing was created" if rows else "invalid batch")
    return InvalidRows(f"{head} ({shown}{more})", [e.as_dict() for e in errors[:MAX_LISTED_ERRORS]])


# --- JSON -----------------------------------------------------------------------------------------


class _Envelope(BaseModel):
    """The body's own shape; each item is validated on its own, so that every bad row can be reported."""

    model_config = ConfigDict(extra="forbid")

    items: list[Any] = Field(min_length=1, max_length=MAX_ITEMS)
    formats: list[str] | None = Field(None, min_length=1)


def _json_items(body: bytes) -> tuple[list[Any], list[str] | None]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError and "too many digits" are ValueErrors too
        raise refuse([RowError(None, "body", "json_invalid", "the body is not valid JSON")]) from None
    try:
        envelope = _Envelope.model_validate(document)
    except ValidationError as exc:
        raise refuse(_pydantic_errors(None, exc, None)) from None
    return envelope.items, envelope.formats


def _json_row(row: int, item: Any) -> _Row:
    if isinstance(item, dict):
        return row, item, None
    return row, [RowError(row, "item", "model_type", "each item must be an object: the body of POST /v1/qrcodes")], None


def _formats(query: str | None, body: list[str] | None) -> list[str]:
    if query is not None and body is not None:
        raise refuse([RowError(None, "formats", "value_error", "give formats in the body or in the query, not both")])
    given = body if body is not None else [f.strip() for f in query.split(",")] if query is not None else None
    if given is None:
        return list(DEFAULT_FORMATS)
    unknown = [f for f in given if f not in IMAGE_FORMATS]
    if unknown or not given:
        message = f"unknown format {_clip(repr(unknown[0]))}" if unknown else "at least one format"
        raise refuse([RowError(None, "formats", "value_error", f"{message}; formats are {', '.join(IMAGE_FORMATS)}")])
    return list(dict.fromkeys(given))


# --- CSV ------------------------------------------------------------------------------------------

# Per row: (row number, the item as a create request would hold it, or that row's errors; column by path)
_Row = tuple[int, dict[str, Any] | list[RowError], dict[tuple[str, ...], str] | None]


def _csv_items(body: bytes) -> Iterator[_Row]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise refuse([RowError(None, "body", "csv_invalid", f"the CSV is not UTF-8 text (byte {exc.start})")]) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = _header(reader)
    count, line = 0, reader.line_num
    while True:
        first_line = line + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise refuse([RowError(first_line, "row", "csv_invalid", f"not valid CSV: {_clip(str(exc))}")]) from None
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        count += 1
        if count > MAX_ITEMS:
            raise refuse([RowError(None, "body", "too_long", f"a batch holds at most {MAX_ITEMS:,} rows")])
        yield _csv_row(first_line, header, record)


def _header(reader: Any) -> list[str]:
    def bad(message: str, column: str = "header", type_: str = "csv_header") -> InvalidRows:
        return refuse([RowError(1, _clip(column), type_, message)], why=_BAD_HEADER)

    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise bad("the CSV is empty: it needs a header row naming the columns (kind, url, …)") from None
    except csv.Error as exc:
        raise bad(f"not valid CSV: {_clip(str(exc))}") from None
    if len(header) > MAX_COLUMNS:
        raise bad(f"the header row has {len(header):,} columns; at most {MAX_COLUMNS:,}", type_="too_long")
    if "kind" not in header:
        raise bad("the header row has no kind column", "kind")
    errors, seen = [], set()
    for name in header:
        if name and name in seen:
            errors.append(RowError(1, _clip(name), "csv_header", "this column appears twice"))
        elif name and name != "kind" and not any(_path(name, model) for model in MODELS.values()):
            errors.append(RowError(1, _clip(name), "csv_header", "unknown column: no kind of code has this field"))
        seen.add(name)
    if errors:
        raise refuse(errors, why=_BAD_HEADER)
    return header


def _csv_row(row: int, header: list[str], record: list[str]) -> _Row:
    cells = [cell.strip() for cell in record]
    if len(cells) > len(header) and any(cells[len(header):]):
        message = f"{len(cells)} cells; the header has {len(header)} columns"
        return row, [RowError(row, "row", "csv_invalid", message)], None
    values = dict(zip(header, cells, strict=False))  # a short record's missing cells are empty
    kind = values.get("kind", "")
    model = MODELS.get(kind)
    if model is None:
        message = f"unknown kind {_clip(repr(kind))}" if kind else "kind is required"
        return row, [RowError(row, "kind", "union_tag_invalid", f"{message}; one of: {', '.join(KINDS)}")], None
    item: dict[str, Any] = {"kind": kind, "data": {}}  # so a row with no data names each missing field
    columns: dict[tuple[str, ...], str] = {}
    errors = []
    for name, value in values.items():
        if name == "kind" or not value:
            continue
        if not name:
            errors.append(RowError(row, "row", "extra_forbidden", "a cell under a column with no name in the header"))
            continue
        path = _path(name, model)
        if path is None:
            errors.append(RowError(row, name, "extra_forbidden", f"{name} does not apply to kind {kind}"))
            continue
        target = item
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = [tag.strip() for tag in value.split(";") if tag.strip()] if _is_list(model, path) else value
        columns[path] = name
    return row, errors or item, columns


def _path(name: str, model: type[BaseModel]) -> tuple[str, ...] | None:
    """Where a column's value goes in a create request of this kind, or None if it does not apply."""
    data = model.model_fields["data"].annotation
    prefix, _, rest = name.partition(".")
    if rest:
        fields = {"data": data.model_fields, "style": _STYLE_FIELDS}.get(prefix, ())
        return (prefix, rest) if rest in fields else None
    if name in model.model_fields and name not in ("kind", "data", "style"):
        return (name,)
    if name in data.model_fields:
        return ("data", name)
    if name in _STYLE_FIELDS:
        return ("style", name)
    return None


def _is_list(model: type[BaseModel], path: tuple[str, ...]) -> bool:
    fields = model.model_fields if len(path) == 1 else model.model_fields[path[0]].annotation.model_fields
    annotation = fields[path[-1]].annotation
    return typing.get_origin(annotation) is list or any(
        typing.get_origin(a) is list for a in typing.get_args(annotation)
    )


# --- errors ---------------------------------------------------------------------------------------


def _pydantic_errors(
    row: int | None, exc: ValidationError, columns: dict[tuple[str, ...], str] | None
) -> list[RowError]:
    errors = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        if loc and loc[0] in MODELS and row is not None:  # the union's tag is not a field
            loc = loc[1:]
        message = error["msg"].removeprefix("Value error, ")
        field_ = ".".join(loc) or ("body" if row is None else "item")
        if error["type"] == "union_tag_invalid":
            field_, message = "kind", f"unknown kind; one of: {', '.join(KINDS)}"
        elif error["type"] == "union_tag_not_found":
            field_, message = "kind", f"kind is required; one of: {', '.join(KINDS)}"
        errors.append(RowError(row, _clip(_name(field_, columns)), error["type"], _clip(message)))
    return errors


def _name(dotted: str, columns: dict[tuple[str, ...], str] | None) -> str:
    """A CSV row's errors name its columns (`url`, not `data.url`); a JSON item's, the dotted path."""
    if columns is None:
        return dotted
    path = tuple(dotted.split("."))
    for length in range(len(path), 0, -1):
        if path[:length] in columns:
            return ".".join((columns[path[:length]], *path[length:]))
    if len(path) == 2 and path[0] in ("data", "style"):
        return path[1]  # a field the row left empty ("url: Field required")
    return dotted


def _clip(text: str) -> str:
    # NUL: a rejected row's errors are stored (JSON on PostgreSQL holds no U+0000) and shown.
    text = text.replace("\x00", "\ufffd")
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"

