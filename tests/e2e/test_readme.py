"""README runs as written (issue #14): its two commands and every block of its tour, against a real
`python3 dev.py up`; so do docs/api.md's bash blocks, and every kind's example there is created and
rendered by that instance.

The blocks run from the checkout, as a reader runs them, with two substitutions only: the instance's own
API port for 8000 (so the test never meets a developer's instance) and the key it printed for `qrf_…`.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import zxingcpp
from PIL import Image

from app.qrcodes.content import KINDS
from tests.e2e.test_up import PROJECT_ROOT, _stop_and_check_no_orphans, _wait_for, _wait_until_up, qrflow_up

pytestmark = pytest.mark.e2e

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
TOUR_FILES = ("poster.png", "codes.csv", "codes.zip", "code.png")  # what the tour writes in the checkout (.gitignore)
TOUR_TIMEOUT = 300


def fenced(path: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text()) if lang == language]


def commands(block: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


@contextmanager
def tour_files_set_aside() -> Iterator[None]:
    """The tour writes its files where a reader would: keep a developer's own files of those names."""
    kept = {name: (PROJECT_ROOT / name).read_bytes() for name in TOUR_FILES if (PROJECT_ROOT / name).exists()}
    try:
        yield
    finally:
        for name in TOUR_FILES:
            (PROJECT_ROOT / name).unlink(missing_ok=True)
        for name, data in kept.items():
            (PROJECT_ROOT / name).write_bytes(data)


def test_readme_runs_as_written_and_every_kind_in_the_docs_renders(tmp_path: Path) -> None:
    readme = PROJECT_ROOT / "README.md"
    quick_start, *tour = fenced(readme, "bash")
    assert commands(quick_start) == ["python3 dev.py up", "python3 dev.py test"], quick_start
    # The second is CI's command, and so runs this very test.
    assert "python3 dev.py test" in (PROJECT_ROOT / ".ci" / "run").read_text()
    banner = fenced(readme, "text")[0]

    with qrflow_up(tmp_path, tmp_path / "data", "readme", command=shlex.split(commands(quick_start)[0])) as up:
        key = _wait_until_up(up, expect_key=True)
        assert key
        for line in banner.splitlines():
            label = line.split("  ")[0].strip() if line.startswith("  ") else line.split("=")[0]
            assert label in up.stderr() + up.stdout(), f"README's banner shows {label!r}{up.tail()}"

        with tour_files_set_aside():
            stdout, stderr, output = _run_blocks(up, key, tour)
            _check_the_tour(up, stdout, stderr, output)
        with tour_files_set_aside():
            stdout, stderr, output = _run_blocks(up, key, fenced(PROJECT_ROOT / "docs" / "api.md", "bash"))
            _check_the_api_guide(up, stdout, stderr, output)

        _check_every_kind_in_the_docs(up, key)
        _stop_and_check_no_orphans(up)


def _run_blocks(up, key: str, blocks: list[str]) -> tuple[str, str, str]:  # noqa: ANN001
    """The blocks as one bash session from the checkout, on this instance's port and key."""
    port = up.api.rsplit(":", 1)[1]
    script = "\n".join(blocks).replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace("qrf_…", key)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRFLOW_")} | {"QRFLOW_API_PORT": port}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=TOUR_TIMEOUT,
    )
    output = f"\n--- blocks' stdout ---\n{result.stdout}\n--- blocks' stderr ---\n{result.stderr}{up.tail()}"
    assert result.returncode == 0, output
    return result.stdout, result.stderr, output


def _check_the_api_guide(up, stdout: str, stderr: str, output: str) -> None:  # noqa: ANN001
    assert '"status":"ready"' in stdout and '"total":2' in stdout, output
    assert '"series"' in stdout and '"tz":"Europe/Paris"' in stdout, output
    assert "saved codes.zip" in stderr, output
    with Image.open(PROJECT_ROOT / "code.png") as image:
        decoded = [barcode.text for barcode in zxingcpp.read_barcodes(image)]
    assert len(decoded) == 1 and decoded[0].startswith(f"{up.api}/r/"), f"code.png decodes to {decoded}{output}"


def _check_the_tour(up, stdout: str, stderr: str, output: str) -> None:  # noqa: ANN001
    assert re.search(r"^/v1/qrcodes/[0-9a-f-]{36}$", stdout, re.M), output
    assert '"status":"ready"' in stdout, output
    assert "302 -> https://example.com/spring" in stdout, output
    assert "302 -> https://example.com/summer" in stdout, output
    assert '"task_id"' in stdout and '"series"' in stdout and '"breakdowns"' in stdout, output
    assert "saved codes.zip" in stderr, output
    with Image.open(PROJECT_ROOT / "poster.png") as image:
        decoded = [barcode.text for barcode in zxingcpp.read_barcodes(image)]
    assert decoded == [f"{up.api}/r/spring"], f"poster.png decodes to {decoded}{output}"
    names = zipfile.ZipFile(PROJECT_ROOT / "codes.zip").namelist()
    assert sorted(n.rsplit(".", 1)[1] for n in names if n != "manifest.csv") == ["png"] * 3 + ["svg"] * 3, names
    assert '"items":[{"id"' in stdout, output  # the scans, and the batches


def _check_every_kind_in_the_docs(up, key: str) -> None:  # noqa: ANN001
    examples = [json.loads(block) for block in fenced(PROJECT_ROOT / "docs" / "api.md", "json")]
    kinds = [e["kind"] for e in examples if isinstance(e, dict) and "kind" in e]
    assert sorted(set(kinds)) == sorted(KINDS), f"docs/api.md has examples of {kinds}, the API has {KINDS}"
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=up.api, headers=headers, timeout=10) as client:
        for example in examples:
            created = client.post("/v1/qrcodes", json=example)
            assert created.status_code == 202, f"docs/api.md's {example['kind']}: {created.text}"

            def rendered(code_id: str = created.json()["id"]) -> dict | None:
                body = client.get(f"/v1/qrcodes/{code_id}").json()
                return None if body["status"] == "pending" else body

            code = _wait_for(f"the {example['kind']} example to render", up, rendered, 60)
            assert code["status"] == "ready", code
            png = client.get(code["images"]["png"]).content
            with Image.open(io.BytesIO(png)) as image:
                assert [b.text for b in zxingcpp.read_barcodes(image)] != [], f"{example['kind']} does not decode"
