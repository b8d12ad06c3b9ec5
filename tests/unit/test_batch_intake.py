"""Reading a batch request (app/qrcodes/batches/intake.py) and writing its zip (archive.py), without a
database: row numbers, CSV columns, every refusal, and the rows that would be inserted."""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.kit.storage import image_key
from app.qrcodes.batches import archive, intake
from app.qrcodes.batches.repository import ManifestEntry, rows_to_insert

WORKSPACE = uuid.uuid4()
BASE = "http://qr.test"


def read_csv(text: str | bytes, formats: str | None = None) -> intake.Intake:
    body = text.encode() if isinstance(text, str) else text
    return intake.read(body, "csv", formats, WORKSPACE, BASE)


def refusal(call) -> list[tuple]:
    with pytest.raises(intake.InvalidRows) as caught:
        call()
    return [(e.get("row"), e["field"], e["type"]) for e in caught.value.details]


def test_csv_rows_are_numbered_by_the_line_they_start_on():
    text = '\ufeffkind,text\r\ntext,"two\r\nlines"\r\n\r\n,\r\ntext,after blanks\r\ntext,\r\n'
    read = read_csv(text)
    assert read.accepted.rows == [2, 6]
    assert [code.content for code in read.accepted.codes] == ["two\r\nlines", "after blanks"]
    assert [(e.row, e.field) for e in read.errors] == [(7, "text")]


def test_csv_cells_fill_the_request_the_data_and_the_style():
    read = read_csv(
        "kind,title,data.title,name,tags,scale,style.error,phones,dynamic,url\r\n"
        "vcard,Card,Engineer,Ada Lovelace, a ;b;;,3,q,,,\r\n"
        "mecard,,,\"Lovelace,Ada\",,,,+44 1;+44 2,,\r\n"
        "url,,,,,,,,no,https://example.com\r\n"
    )
    assert read.errors == []
    vcard, mecard, url = read.accepted.codes
    assert (vcard.title, vcard.data["title"], vcard.tags, vcard.style["scale"], vcard.style["error"]) == (
        "Card", "Engineer", ["a", "b"], 3, "Q"
    )
    assert mecard.data["phones"] == ["+44 1", "+44 2"]
    assert (url.link, url.content) == (None, "https://example.com")


def test_csv_row_faults_name_the_column():
    read = read_csv(
        "kind,url,text,number,\r\n"
        "text,https://example.com,x,,\r\n"  # url does not apply to text
        "sms,,,,\r\n"  # no number
        "text,,a\x00b,,\r\n"  # NUL
        "text,,ok,,x\r\n"  # a cell under a column with no name
        "text,,ok,,,surplus\r\n"  # more cells than columns
        ",,,,\r\n"  # blank: skipped
        "unknown,,,,\r\n"
    )
    assert [(e.row, e.field, e.type) for e in read.errors] == [
        (2, "url", "extra_forbidden"),
        (3, "number", "missing"),
        (4, "text", "string_nul"),
        (5, "row", "extra_forbidden"),
        (6, "row", "csv_invalid"),
        (8, "kind", "union_tag_invalid"),
    ]
    assert read.rejected_rows == 6 and read.accepted.codes == []
    assert "\x00" not in json.dumps([e.as_dict() for e in read.errors])


def test_csv_whole_request_faults():
    assert refusal(lambda: read_csv("")) == [(1, "header", "csv_header")]
    assert refusal(lambda: read_csv("url\r\nhttps://e.com\r\n")) == [(1, "kind", "csv_header")]
    assert refusal(lambda: read_csv("kind,text,text,bogus\r\n")) == [
        (1, "text", "csv_header"), (1, "bogus", "csv_header")
    ]
    assert refusal(lambda: read_csv(b"kind,text\r\ntext,\xff\r\n")) == [(None, "body", "csv_invalid")]
    assert refusal(lambda: read_csv('kind,text\r\ntext,"open\r\n')) == [(2, "row", "csv_invalid")]
    many = "kind,text\r\n" + "text,x\r\n" * (intake.MAX_ITEMS + 1)
    assert refusal(lambda: read_csv(many)) == [(None, "body", "too_long")]
    assert len(read_csv("kind,text\r\n" + "text,x\r\n" * intake.MAX_ITEMS).accepted.codes) == intake.MAX_ITEMS


def test_json_faults():
    def read(document, formats=None) -> intake.Intake:
        return intake.read(json.dumps(document).encode(), "json", formats, WORKSPACE, BASE)

    assert refusal(lambda: intake.read(b"{", "json", None, WORKSPACE, BASE)) == [(None, "body", "json_invalid")]
    assert refusal(lambda: read([])) == [(None, "body", "model_type")]
    assert refusal(lambda: read({"items": [], "x": 1})) == [
        (None, "items", "too_short"), (None, "x", "extra_forbidden")
    ]
    assert refusal(lambda: read({"items": [{}] * (intake.MAX_ITEMS + 1)})) == [(None, "items", "too_long")]
    result = read({"items": [{"kind": "text", "data": {"text": "a"}}, 3, {"data": {}}, {"kind": "x"}]})
    assert [(e.row, e.field, e.type) for e in result.errors] == [
        (2, "item", "model_type"), (3, "kind", "union_tag_not_found"), (4, "kind", "union_tag_invalid"),
    ]
    long = "é" * 3000  # UTF-8 bytes beyond any QR code's capacity
    result = read({"items": [{"kind": "text", "data": {"text": long}}]})
    assert [(e.row, e.field, e.type) for e in result.errors] == [(1, "data", "payload_too_long")]
    assert len(result.errors[0].message) <= 300


def test_formats():
    body = "kind,text\r\ntext,a\r\n"
    assert read_csv(body).formats == ["png", "svg"]
    assert read_csv(body, " pdf,png,pdf").formats == ["pdf", "png"]
    assert refusal(lambda: read_csv(body, "png,gif")) == [(None, "formats", "value_error")]
    assert refusal(lambda: read_csv(body, "")) == [(None, "formats", "value_error")]
    document = json.dumps({"items": [{"kind": "text", "data": {"text": "a"}}], "formats": ["eps"]}).encode()
    assert intake.read(document, "json", None, WORKSPACE, BASE).formats == ["eps"]
    assert refusal(lambda: intake.read(document, "json", "png", WORKSPACE, BASE)) == [(None, "formats", "value_error")]


def test_media_types():
    assert intake.media_type("text/csv; charset=utf-8") == "csv"
    assert intake.media_type("Application/JSON") == "json"
    for refused in (None, "multipart/form-data; boundary=x", "text/plain"):
        with pytest.raises(intake.UnsupportedMediaType):
            intake.media_type(refused)


def test_slugs_asked_for_twice_and_the_rows_to_insert():
    read = read_csv(
        "kind,url,slug,tags\r\n"
        "url,https://e.com/1,my-slug,a;b\r\n"
        "url,https://e.com/2,my-slug,\r\n"
        "url,https://e.com/3,,\r\n"
        "text,,,\r\n"
    )
    assert [(e.row, e.field, e.type) for e in read.errors] == [(3, "slug", "slug_taken"), (5, "text", "missing")]
    assert read.accepted.slugs == {"my-slug": 2}
    batch_id = uuid.uuid4()
    rows = rows_to_insert(read.accepted, batch_id)
    assert len(rows.codes) == len(rows.links) == 2
    assert len({frozenset(row) for row in rows.codes}) == 1  # one executemany: every row has the same keys
    assert [row["link_id"] for row in rows.codes] == [row["id"] for row in rows.links]
    assert rows.codes[0]["content"] == f"{BASE}/r/my-slug" and rows.links[0]["slug"] == "my-slug"
    assert [(t["tag"], t["position"]) for t in rows.tags] == [("a", 0), ("b", 1)]
    assert rows.items == [
        {"batch_id": batch_id, "row": row, "code_id": code["id"]} for row, code in zip((2, 4), rows.codes, strict=True)
    ]
    read.accepted.drop({2})
    assert read.accepted.rows == [4] and read.accepted.slugs == {}


# --- the archive ---------------------------------------------------------------------------------------


class DictStore:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.files.get(key)


def test_archive_holds_each_format_and_a_manifest_of_every_row():
    store = DictStore()
    ready, missing = uuid.uuid4(), uuid.uuid4()
    for fmt, data in (("png", b"\x89PNG fake"), ("svg", b"<svg/>" * 100)):
        store.files[image_key(WORKSPACE, ready, f"etag-{fmt}", fmt)] = data
    entries = [
        ManifestEntry(
            2, ready, "url", "ready", f"{BASE}/r/abc", "abc", "https://e.com", "Poster", None,
            {"png": "etag-png", "svg": "etag-svg"},
        ),
        ManifestEntry(3, missing, "text", "ready", "x", None, None, None, None, {"png": "gone", "svg": "gone"}),
        ManifestEntry(5, uuid.uuid4(), "text", "failed", "y", None, None, None, "boom", {}),
    ]
    rejected = [
        {"row": 4, "field": "url", "type": "x", "message": "bad"},
        {"row": 4, "field": "title", "type": "x", "message": "long"},
    ]
    created = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)

    def build() -> bytes:
        return b"".join(archive.stream(store, WORKSPACE, entries, rejected, ["png", "svg"], BASE, created))

    data = build()
    assert data == build()  # the same batch, the same bytes
    zipped = zipfile.ZipFile(io.BytesIO(data))
    assert zipped.namelist() == ["00002.png", "00002.svg", "manifest.csv"]
    assert zipped.getinfo("00002.png").compress_type == zipfile.ZIP_STORED
    assert zipped.getinfo("00002.svg").compress_type == zipfile.ZIP_DEFLATED
    assert zipped.getinfo("manifest.csv").date_time == (2026, 3, 1, 12, 30, 0)
    assert zipped.read("00002.svg") == b"<svg/>" * 100
    manifest = list(csv.DictReader(io.StringIO(zipped.read("manifest.csv").decode("utf-8-sig"))))
    assert [(m["row"], m["status"], m["png_file"], m["error"]) for m in manifest] == [
        ("2", "ready", "00002.png", ""),
        ("3", "ready", "", "the svg image is missing from storage"),
        ("4", "rejected", "", "url: bad; title: long"),
        ("5", "failed", "", "boom"),
    ]
    assert (manifest[0]["short_url"], manifest[0]["target_url"], manifest[0]["title"]) == (
        f"{BASE}/r/abc", "https://e.com", "Poster"
    )


# --- whatever arrives, a report or a refusal ----------------------------------------------------------

_CELLS = st.sampled_from(
    ["kind", "text", "url", "ssid", "tags", "scale", "data.title", "style.dark", "x", "", "url", "text"]
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.text(max_size=300),
    st.lists(st.lists(st.one_of(_CELLS, st.text(max_size=20)), max_size=6), max_size=6).map(
        lambda rows: "\r\n".join(",".join(row) for row in rows)
    ),
))
def test_any_csv_is_read_or_refused(text):
    try:
        read = read_csv(("kind,text,url,scale\r\n" if text[:1] == "t" else "") + text)
    except intake.InvalidRows as refused:
        assert refused.details and all("\x00" not in e["field"] for e in refused.details)
        return
    for error in read.errors:
        assert error.row >= 2 and "\x00" not in error.field + error.message


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["items", "formats", "kind", "data", "text", "style"]), inner, max_size=3)
    ),
    max_leaves=12,
))
def test_any_json_is_read_or_refused(document):
    try:
        intake.read(json.dumps({"items": [document]}).encode(), "json", None, WORKSPACE, BASE)
        intake.read(json.dumps(document).encode(), "json", None, WORKSPACE, BASE)
    except intake.InvalidRows:
        pass


def test_a_header_over_the_column_limit_is_one_error():
    header = ",".join(["kind", *(f"c{i}" for i in range(80_000))])
    with pytest.raises(intake.InvalidRows) as caught:
        read_csv(f"{header}\r\nurl\r\n")
    assert caught.value.details == [
        {"row": 1, "field": "header", "type": "too_long", "message": "the header row has 80,001 columns; at most 1,000"}
    ]


def test_duplicate_columns_are_found_in_a_header_at_the_limit():
    names = ["kind", *(["url", "title"] * ((intake.MAX_COLUMNS - 1) // 2))]
    assert refusal(lambda: read_csv(",".join(names) + "\r\n")) == [(1, name, "csv_header") for name in names[3:]]


def test_the_errors_listed_are_capped_and_the_message_counts_them_all():
    rows = "".join("url,not a url\r\n" for _ in range(intake.MAX_LISTED_ERRORS + 500))
    refused = intake.refuse(read_csv("kind,url\r\n" + rows).errors)
    assert len(refused.details) == intake.MAX_LISTED_ERRORS
    assert str(refused).startswith(f"{intake.MAX_LISTED_ERRORS + 500} row(s) are invalid")
