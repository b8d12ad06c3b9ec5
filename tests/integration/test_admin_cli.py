"""The admin commands (`qrflow apikey …`, `qrflow rollup`) as a self-hoster runs them, in real processes: they
find the instance's database the way `qrflow up` does or say what to set, never create an empty database,
and refuse an unknown workspace unless --create-workspace (issue #14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def qrflow(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRFLOW_")}
    env.update(QRFLOW_DATA_DIR=str(data_dir), QRFLOW_REDIS_URL=os.environ["QRFLOW_REDIS_URL"])
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=data_dir.parent, env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    migrated = qrflow(data_dir, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    first = qrflow(data_dir, "apikey", "create", "--workspace", "default", "--create-workspace", "--scope", "admin")
    assert first.returncode == 0, first.stderr
    return data_dir


@pytest.mark.parametrize(
    "command", [["apikey", "create", "--workspace", "default"], ["apikey", "revoke", "abc"], ["rollup"]]
)
def test_another_data_dir_is_a_message_and_no_new_database(tmp_path: Path, command: list[str]) -> None:
    elsewhere = tmp_path / "not-the-instance"
    result = qrflow(elsewhere, *command)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert f"no qrflow database at {elsewhere / 'qrflow.db'}" in result.stderr, result.stderr
    assert "QRFLOW_DATA_DIR" in result.stderr and "`qrflow up` runs with" in result.stderr, result.stderr
    assert not (elsewhere / "qrflow.db").exists() and not elsewhere.exists(), "the command created a database"


def test_a_database_without_the_schema_says_to_migrate(tmp_path: Path) -> None:
    data_dir = tmp_path / "empty"
    data_dir.mkdir()
    (data_dir / "qrflow.db").write_bytes(b"")
    result = qrflow(data_dir, "apikey", "create", "--workspace", "default")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "has no qrflow tables: `qrflow migrate` creates them" in result.stderr, result.stderr


def test_an_unknown_workspace_is_refused_unless_asked_to_create_it(instance: Path) -> None:
    typo = qrflow(instance, "apikey", "create", "--workspace", "defualt")
    assert typo.returncode == 1, typo
    assert "no workspace 'defualt' (there are: 'default'); add --create-workspace" in typo.stderr, typo.stderr
    assert "qrf_" not in typo.stdout

    known = qrflow(instance, "apikey", "create", "--workspace", "default")
    assert known.returncode == 0 and known.stdout.strip().startswith("qrf_"), known

    created = qrflow(instance, "apikey", "create", "--workspace", "shop", "--create-workspace")
    assert created.returncode == 0 and created.stdout.strip().startswith("qrf_"), created
    again = qrflow(instance, "apikey", "create", "--workspace", "shop")
    assert again.returncode == 0, again


def test_user_create_prints_a_one_time_password_that_signs_in(instance: Path) -> None:
    import asyncio

    from app.identity.people import authenticate_person
    from app.kit.db import async_sessions, create_gateway_engine
    from app.kit.settings import Settings

    created = qrflow(instance, "user", "create", "--workspace", "default", "--email", "Ann@Example.com",
                     "--role", "editor")
    assert created.returncode == 0, created.stderr
    password = created.stdout.strip().splitlines()[-1]
    assert len(password) >= 16 and "ann@example.com" in created.stderr and "editor" in created.stderr
    assert password not in created.stderr

    async def sign_in(password: str):
        engine = create_gateway_engine(Settings(data_dir=instance))
        try:
            async with async_sessions(engine)() as session:
                person = await authenticate_person(session, "ANN@example.com", password)
                return person and (person.email, person.role, person.must_change_password)
        finally:
            await engine.dispose()

    assert asyncio.run(sign_in(password)) == ("ann@example.com", "editor", True)  # theirs to replace
    assert asyncio.run(sign_in(password + "x")) is None

    again = qrflow(instance, "user", "create", "--workspace", "default", "--email", "ann@example.com")
    assert again.returncode == 1 and "exists already" in again.stderr and "Traceback" not in again.stderr, again
    typo = qrflow(instance, "user", "create", "--workspace", "defualt", "--email", "bo@example.com")
    assert typo.returncode == 1 and "no workspace 'defualt'" in typo.stderr, typo
    bad = qrflow(instance, "user", "create", "--workspace", "default", "--email", "not-an-email")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and not bad.stdout.strip(), bad
    role = qrflow(instance, "user", "create", "--workspace", "default", "--email", "cy@example.com", "--role", "root")
    assert role.returncode == 2 and "root" in role.stderr, role
