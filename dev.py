#!/usr/bin/env python3
"""Set-up and entry point for a fresh checkout: needs nothing but Python >= 3.11.

    python3 dev.py up      # the whole platform (gateway, workers, beat, Flower) on the embedded default
    python3 dev.py test    # ruff check, then the test suite (extra arguments go to pytest)
    python3 dev.py bench   # the benchmarks in bench/

It keeps a virtualenv in .venv and reinstalls the project only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".qrflow-installed"


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - runs on the system python3 before .venv exists: a plain refusal
        sys.exit(f"qrflow needs Python >= 3.11; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing qrflow and its dependencies into .venv ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> None:
    """The browser tests (tests/browser/) drive Debian's chromium through Playwright; a browser download
    (`playwright install`) is never needed. Installed with apt-get when missing and this is root."""
    if CHROMIUM.exists() or not Path("/usr/bin/apt-get").exists():
        return
    if os.geteuid() != 0:
        print("the browser tests need Debian's chromium: sudo apt-get install -y chromium", flush=True)
        return
    print("installing chromium for the browser tests (apt-get) ...", flush=True)
    quiet = {"stdout": subprocess.DEVNULL, "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    if subprocess.run(["apt-get", "install", "-y", "chromium"], **quiet).returncode != 0:
        subprocess.run(["apt-get", "update"], **quiet)
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, **quiet)


COMMANDS = {
    "up": lambda args: [str(BIN / "qrflow"), "up", *args],
    "test": lambda args: [str(BIN / "python"), "-m", "pytest", *args],
    "bench": lambda args: [str(BIN / "python"), str(ROOT / "bench" / "run.py"), *args],
    "qrflow": lambda args: [str(BIN / "qrflow"), *args],
}
# Run first, from the project root: the command itself runs only if every one of them passes.
BEFORE = {
    "test": [[str(BIN / "ruff"), "check", "."]],  # the lint configured in pyproject.toml
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    ensure_environment()
    if sys.argv[1] == "test":
        ensure_chromium()
    command = COMMANDS[sys.argv[1]](sys.argv[2:])
    os.chdir(ROOT)
    for step in BEFORE.get(sys.argv[1], []):
        returncode = subprocess.run(step).returncode
        if returncode != 0:
            sys.exit(returncode)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
