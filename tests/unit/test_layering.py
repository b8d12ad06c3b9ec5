"""The gateway publishes events by name; rendering code never loads in its process."""

from __future__ import annotations

import subprocess
import sys


def test_the_gateway_never_imports_segno_or_task_modules():
    probe = (
        "import sys\n"
        "from app.gateway.main import create_app\n"
        "from fastapi.testclient import TestClient\n"
        "create_app()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('segno', 'tasks')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
