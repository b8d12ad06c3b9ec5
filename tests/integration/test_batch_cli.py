"""`qrflow batch create`: the command's work against the real gateway (its TestClient is an httpx client),
and its arguments and exit codes through typer."""

from __future__ import annotations

import io
import zipfile

import pytest
from rich.console import Console
from typer.testing import CliRunner

from app import batch_cli
from app.cli import cli
from app.kit.redis_server import free_port
from tests.decoding import decode_png
from tests.integration.batch_helpers import csv_body, mixed_rows


def run(gateway, caller, body: bytes, out, partial: bool = False, formats: str = "png") -> tuple[int, str]:
    output = io.StringIO()
    console = Console(file=output, width=120)
    code = batch_cli.run(gateway, caller.headers, body, formats, out, partial, console, timeout=120, poll_seconds=0.1)
    return code, output.getvalue()


def test_the_command_creates_the_batch_waits_and_saves_its_archive(gateway, alice, tmp_path):
    header, rows = mixed_rows(30, "cli")
    out = tmp_path / "codes.zip"
    code, output = run(gateway, alice, csv_body(header, rows), out)
    assert code == batch_cli.OK, output
    assert "saved" in output and "30 codes" in output
    archive = zipfile.ZipFile(out)
    assert len([n for n in archive.namelist() if n.endswith(".png")]) == 30
    assert not out.with_name("codes.zip.part").exists()
    first = archive.read("00002.png")
    assert decode_png(first)


def test_bad_rows_are_printed_as_a_table_and_nothing_is_saved(gateway, alice, tmp_path):
    out = tmp_path / "codes.zip"
    body = csv_body(["kind", "url"], [["url", "https://example.com/ok"], ["url", "mailto:x@example.com"]])
    code, output = run(gateway, alice, body, out)
    assert code == batch_cli.REFUSED
    assert "HTTP 422" in output and "│ 3   │ url" in output and "--partial" in output
    assert not out.exists()

    code, output = run(gateway, alice, body, out, partial=True)
    assert code == batch_cli.PARTLY, output
    assert out.exists() and "1 rows rejected" in output and "not in the archive" in output


def test_arguments_and_exit_codes(tmp_path, monkeypatch):
    runner = CliRunner()
    csv_file = tmp_path / "codes.csv"
    csv_file.write_bytes(b"kind,text\r\ntext,a\r\n")
    monkeypatch.delenv("QRFLOW_API_KEY", raising=False)
    assert runner.invoke(cli, ["batch", "create", str(tmp_path / "missing.csv"), "--key", "k"]).exit_code == 2
    assert runner.invoke(cli, ["batch", "create", str(csv_file)]).exit_code == 2  # no key

    monkeypatch.setattr(batch_cli, "_ATTEMPTS", 1)
    result = runner.invoke(cli, ["batch", "create", str(csv_file), "--key", "k", "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == batch_cli.FAILED
    assert "cannot reach the gateway" in result.output


@pytest.mark.parametrize("status", [401, 403])
def test_a_key_that_may_not_create_is_a_failure(gateway, alice_reader, tmp_path, status):
    caller = alice_reader if status == 403 else type(alice_reader)("x", "qrf_bad_key")
    code, output = run(gateway, caller, b"kind,text\r\ntext,a\r\n", tmp_path / "x.zip")
    assert code == batch_cli.FAILED and f"HTTP {status}" in output
