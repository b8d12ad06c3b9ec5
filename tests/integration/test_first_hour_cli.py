"""The CLI as a new user meets it (issue #14): help without placeholders, a bad --format is a usage error,
and a JSON file is a batch too."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from rich.console import Console
from typer.main import get_command
from typer.testing import CliRunner

from app import batch_cli
from app.cli import cli

COMMANDS = [
    ["up"], ["api"], ["worker"], ["beat"], ["flower"], ["migrate"], ["rollup"],
    ["apikey", "create"], ["apikey", "revoke"], ["batch", "create"], ["scans", "reclassify"], ["user", "create"],
]


def test_every_command_exists_in_the_list_above():
    group = get_command(cli)
    listed = {tuple(c) for c in COMMANDS}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        names = [(name, sub) for sub in subcommands] if subcommands else [(name,)]
        assert set(names) <= listed, names


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_no_placeholders(command):
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output, result.output
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert "{" not in usage, usage


def test_an_unknown_format_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.delenv("QRFLOW_API_KEY", raising=False)
    csv_file = tmp_path / "codes.csv"
    csv_file.write_bytes(b"kind,text\r\ntext,a\r\n")
    result = CliRunner().invoke(cli, ["batch", "create", str(csv_file), "-f", "gif", "--key", "k"])
    assert result.exit_code == 2, result.output
    assert "gif" in result.output and "png, svg, pdf, eps" in result.output


def test_a_json_file_is_a_batch_too(gateway, alice, tmp_path):
    items = [{"kind": "text", "data": {"text": f"json row {n}"}} for n in range(3)]
    output = io.StringIO()
    out = tmp_path / "codes.zip"
    body = json.dumps({"items": items}).encode()
    code = batch_cli.run(
        gateway, alice.headers, body, None, out, False, Console(file=output, width=120), timeout=120, poll_seconds=0.1
    )
    assert code == batch_cli.OK, output.getvalue()
    names = zipfile.ZipFile(out).namelist()
    assert len([n for n in names if n.endswith(".png")]) == 3 and len([n for n in names if n.endswith(".svg")]) == 3
