"""What real `qrflow` processes leave on disk and say about themselves (issue #13, item 12): the data
directory 0700 and the SQLite database 0600 whatever the umask, and Flower without its Server header."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import uuid

import httpx

from app.kit.redis_server import free_port


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def qrflow_env(data_dir, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "QRFLOW_DATABASE_URL"}
    return {**env, "QRFLOW_DATA_DIR": str(data_dir), "QRFLOW_LOG_FORMAT": "json", **extra}


def migrate(data_dir) -> None:
    subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"], env=qrflow_env(data_dir), check=True, capture_output=True,
        preexec_fn=lambda: os.umask(0o022),  # the usual umask, which would make both readable by everyone
    )


def test_the_data_directory_and_the_database_are_private(tmp_path):
    data_dir = tmp_path / "data"
    migrate(data_dir)
    assert mode(data_dir) == 0o700
    database = data_dir / "qrflow.db"
    assert mode(database) == 0o600
    for sidecar in (data_dir / "qrflow.db-wal", data_dir / "qrflow.db-shm"):
        if sidecar.exists():
            assert mode(sidecar) == 0o600


def test_an_existing_readable_installation_is_tightened(tmp_path):
    data_dir = tmp_path / "data"
    migrate(data_dir)
    data_dir.chmod(0o755)
    (data_dir / "qrflow.db").chmod(0o644)
    migrate(data_dir)
    assert mode(data_dir) == 0o700 and mode(data_dir / "qrflow.db") == 0o600


def test_flower_sends_no_server_header(tmp_path, redis_url):
    port, password = free_port(), uuid.uuid4().hex
    env = qrflow_env(
        tmp_path, QRFLOW_FLOWER_PORT=str(port), QRFLOW_FLOWER_PASSWORD=password, QRFLOW_REDIS_URL=redis_url
    )
    with (tmp_path / "flower.log").open("wb") as log:
        flower = subprocess.Popen([sys.executable, "-m", "app.cli", "flower"], env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    refused = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                    break
                except httpx.HTTPError:
                    assert flower.poll() is None and time.monotonic() < deadline, (tmp_path / "flower.log").read_text()
                    time.sleep(0.2)
            served = httpx.get(f"http://127.0.0.1:{port}/metrics", auth=("admin", password), timeout=10)
        finally:
            flower.send_signal(signal.SIGTERM)
            flower.wait(30)
    assert refused.status_code == 401 and served.status_code == 200
    assert "server" not in refused.headers and "server" not in served.headers
