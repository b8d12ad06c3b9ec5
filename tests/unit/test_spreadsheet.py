"""CSV cells a spreadsheet would run as formulas: one function for every CSV qrflow writes (issue #13, 7)."""

from __future__ import annotations

import csv
import io
import uuid
import zipfile
from datetime import UTC, datetime

import pytest

from app.kit.spreadsheet import safe_cell
from app.kit.storage import LocalImageStore
from app.qrcodes.batches.archive import MANIFEST, stream
from app.qrcodes.batches.repository import ManifestEntry

FORMULAS = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "@SUM(1+1)", "-2+3", "\t=1+1", "\r=1+1"]


@pytest.mark.parametrize("formula", FORMULAS)
def test_a_formula_gets_an_apostrophe(formula):
    assert safe_cell(formula) == "'" + formula


@pytest.mark.parametrize("value", ["Poster A", "https://example.com/?a=1", "", 3, -2, None, "a=b"])
def test_anything_else_is_left_alone(value):
    assert safe_cell(value) == value


def test_the_manifest_writes_no_formula(tmp_path):
    entries = [
        ManifestEntry(
            row=index + 2, code_id=uuid.uuid4(), kind="text", status="pending", content=formula, slug=None,
            target_url=None, title=formula, error=None, images={},
        )
        for index, formula in enumerate(FORMULAS)
    ]
    rejected = [{"row": 99, "field": "url", "message": "-1+1 is not a URL"}]
    archive = b"".join(
        stream(LocalImageStore(tmp_path), uuid.uuid4(), entries, rejected, ["png"], "http://qr.test", datetime.now(UTC))
    )
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        manifest = opened.read(MANIFEST).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(manifest)))
    assert [row["title"] for row in rows[:-1]] == ["'" + formula for formula in FORMULAS]
    assert [row["content"] for row in rows[:-1]] == ["'" + formula for formula in FORMULAS]
    assert rows[-1]["row"] == "99" and rows[-1]["error"].startswith("url: -1+1")
