"""The benchmark commands README.md and docs/ give exist as written: each script answers --help, and every
flag a document shows it with is one the script takes. (README's tour and docs/api.md's blocks are run in
full by tests/e2e/test_readme.py; a benchmark runs for minutes, so here its command line is what is held.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"(?:\.venv/bin/python|python3) (bench/[a-z_]+\.py)([^`|\n]*)")


def documented() -> dict[str, set[str]]:
    """Each benchmark script the documents name, with the flags they show it with."""
    commands: dict[str, set[str]] = {}
    for document in DOCUMENTS:
        for script, rest in COMMAND.findall(document.read_text()):
            commands.setdefault(script, set()).update(re.findall(r"--[a-z][a-z-]*", rest))
    return commands


def test_the_documents_name_benchmark_commands():
    assert len(documented()) >= 10


@pytest.mark.parametrize(("script", "flags"), sorted(documented().items()))
def test_a_documented_benchmark_command_exists_as_written(script: str, flags: set[str]):
    assert (ROOT / script).is_file(), f"{script} is documented but missing"
    shown = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    taken = set(re.findall(r"--[a-z][a-z-]*", shown.stdout))
    assert flags <= taken, f"{script}: documented flags it does not take: {sorted(flags - taken)}"
