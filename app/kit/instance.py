"""What makes one `qrflow up` its own: ports nobody else listens on, a gateway that answers with this
instance's id, and a Redis database no other instance uses.

Two instances on one Redis database would share Celery's queues (each one's workers taking the other's
tasks, for codes they cannot find) and the app's own keys. `qrflow up` refuses that rather than
namespacing every key: the instance holds a claim on the database (a key with a short expiry it keeps
renewing), and a second instance that finds another's claim stops with a message naming the other and
saying what to set. Another database of the same server (redis://host:6379/1) is isolated: Celery's
broadcast channels are prefixed by the database number, and the app's channel only evicts cached links.
"""

from __future__ import annotations

import errno
import json
import secrets
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import redis
import structlog

from app.kit.settings import Settings

log = structlog.get_logger(__name__)

# The gateway echoes its instance id here on /readyz (app/gateway/routers/health.py).
INSTANCE_HEADER = "X-Qrflow-Instance"
CLAIM_KEY = "qrflow:instance"
CLAIM_SECONDS = 15  # how long a claim outlives an instance killed without a chance to release it
_RENEW_EVERY = 5.0


def new_instance_id() -> str:
    return secrets.token_hex(8)


class InstanceConflict(SystemExit):
    """`qrflow up` cannot start: the message says why and what to change."""


def check_ports(settings: Settings) -> None:
    """Fail before anything starts when a port is taken (a server that cannot bind would be restarted in a
    loop while another instance's gateway answered in its place)."""
    ports = [
        ("the API", settings.api_host, settings.api_port, "QRFLOW_API_PORT"),
        ("Flower", settings.flower_host, settings.flower_port, "QRFLOW_FLOWER_PORT"),
    ]
    if settings.api_port == settings.flower_port:
        raise InstanceConflict(f"QRFLOW_API_PORT and QRFLOW_FLOWER_PORT are both {settings.api_port}: one each")
    for what, host, port, variable in ports:
        if not _can_bind(host, port):
            raise InstanceConflict(
                f"port {port} on {host} ({variable}), for {what}, is taken: another process listens there "
                f"(another qrflow instance?). Stop it, or set {variable} to a free port."
            )


def _can_bind(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn and tornado bind: a port left in TIME_WAIT by a stopped instance is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


@dataclass
class RedisClaim:
    """This instance's hold on its Redis database, renewed while it runs and released when it stops."""

    url: str
    instance_id: str
    about: dict[str, str]
    _renewed_at: float = 0.0

    def __post_init__(self) -> None:
        self._redis = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
        self._value = json.dumps({"instance": self.instance_id, **self.about})

    def take(self) -> None:
        if not self._redis.set(CLAIM_KEY, self._value, nx=True, ex=CLAIM_SECONDS):
            held = self._redis.get(CLAIM_KEY)
            other = json.loads(held) if held else {}
            if other.get("instance") != self.instance_id:
                raise InstanceConflict(_conflict_message(self.url, other))
        self._renewed_at = time.monotonic()

    def renew_if_due(self) -> None:
        if time.monotonic() - self._renewed_at < _RENEW_EVERY:
            return
        self._renewed_at = time.monotonic()
        try:
            # Only our own claim: if it lapsed (Redis was away) and another took it, that one keeps it.
            held = self._redis.get(CLAIM_KEY)
            if held is None or json.loads(held).get("instance") == self.instance_id:
                self._redis.set(CLAIM_KEY, self._value, ex=CLAIM_SECONDS)
            else:
                log.error("instance_claim_lost", other=held.decode(errors="replace"))
        except (redis.RedisError, OSError) as exc:
            log.warning("instance_claim_not_renewed", error=repr(exc))

    def release(self) -> None:
        try:
            held = self._redis.get(CLAIM_KEY)
            if held and json.loads(held).get("instance") == self.instance_id:
                self._redis.delete(CLAIM_KEY)
        except (redis.RedisError, OSError):
            pass  # it expires by itself
        finally:
            self.close()

    def close(self) -> None:
        self._redis.close()


def _conflict_message(url: str, other: dict[str, str]) -> str:
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0)
    another = urlunsplit(parts._replace(path=f"/{(database + 1) % 16}"))
    return (
        f"another qrflow instance uses the Redis database at {url} (its API {other.get('api', '?')}, data in "
        f"{other.get('data_dir', '?')}). Two instances on one Redis database would take each other's tasks: "
        f"give this one a database of its own, e.g. QRFLOW_REDIS_URL={another}, or another Redis. "
        f"If that instance has stopped, its claim expires within {CLAIM_SECONDS} s."
    )
