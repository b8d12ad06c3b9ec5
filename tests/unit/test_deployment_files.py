"""docker-compose.yml and .env.example stay true to the code: no Docker engine runs here, so these
tests are what keeps them honest."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from typer.main import get_command

from app.cli import cli
from app.kit.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _subcommands() -> set[str]:
    return set(get_command(cli).commands)  # type: ignore[attr-defined]


def test_every_compose_service_of_ours_runs_a_real_qrflow_subcommand():
    services = _compose()["services"]
    ours = {name: s for name, s in services.items() if s.get("image", "").startswith("qrflow")}
    assert {"migrate", "api", "worker-qr", "worker-scans", "worker-analytics", "beat", "flower"} <= set(ours)
    for name, service in ours.items():
        assert service["command"][0] in _subcommands(), f"{name}: {service['command']}"
        assert service.get("entrypoint") is None  # the image's entrypoint is `qrflow`


def test_compose_workers_cover_every_queue_and_there_is_one_beat():
    from app.cli import QUEUES

    services = _compose()["services"]
    consumed = set()
    for service in services.values():
        command = service.get("command", [])
        if command and command[0] == "worker":
            consumed |= set(command[command.index("--queues") + 1].split(","))
    assert consumed == set(QUEUES)
    beats = [s for s in services.values() if s.get("command", [None])[0] == "beat"]
    assert len(beats) == 1 and beats[0]["deploy"]["replicas"] == 1


def test_compose_services_have_healthchecks_and_ordered_start():
    services = _compose()["services"]
    for name, service in services.items():
        if name != "migrate":
            assert "healthcheck" in service, name
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert (
        services["redis"]["command"][-3:] == ["--maxmemory-policy", "noeviction"]
        or "noeviction" in services["redis"]["command"]
    )
    assert "--appendonly" in services["redis"]["command"]


def test_env_example_lists_every_setting():
    listed = set(re.findall(r"^(QRFLOW_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    settings = {f"QRFLOW_{name.upper()}" for name in Settings.model_fields}
    assert settings == listed - {"POSTGRES_PASSWORD"}
