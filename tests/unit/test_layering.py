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


MODEL_MODULES = [
    "app.analytics.models", "app.identity.models", "app.links.models", "app.qrcodes.batches.models",
    "app.qrcodes.models", "app.scans.models", "app.qrcodes.logos", "app.gateway.idempotency", "app.webhooks.models",
]


def test_every_column_has_its_type_whatever_else_a_process_imported():
    # Each module alone in a fresh interpreter, as `qrflow rollup` loads only the analytics tables: a foreign
    # key left to take its target's type would be NullType there, and ids would read back as strings.
    for module in MODEL_MODULES:
        probe = (
            f"import {module}\n"
            "from sqlalchemy.types import NullType\n"
            "from app.kit.db import Base\n"
            "print(sorted(f'{t.name}.{c.name}' for t in Base.metadata.tables.values() for c in t.columns "
            "if isinstance(c.type, NullType)))\n"
        )
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "[]", module


def test_the_gateway_never_loads_the_svg_renderer():
    """resvg holds the GIL while it draws: in the gateway it would stall every request (issue #13)."""
    probe = (
        "import sys\n"
        "from app.gateway.main import create_app\n"
        "create_app()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'resvg_py'))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
