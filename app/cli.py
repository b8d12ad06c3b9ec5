"""The `qrflow` command: `up` runs everything; the other subcommands run one service each
(what docker-compose runs, one per container)."""

from __future__ import annotations

import logging
import os
import secrets
import sys
import warnings
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from app.batch_cli import batch_cli
from app.cli_help import PlainHelpCommand
from app.identity.models import Role, Scope
from app.kit.settings import Settings, get_settings

cli = typer.Typer(help="qrflow: QR codes, dynamic links and scan analytics.", no_args_is_help=True)
apikey_cli = typer.Typer(help="Create and revoke API keys.", no_args_is_help=True)
cli.add_typer(apikey_cli, name="apikey")
cli.add_typer(batch_cli, name="batch")  # qrflow batch create FILE.csv (app/batch_cli.py)
user_cli = typer.Typer(help="People who sign in to the dashboard.", no_args_is_help=True)
cli.add_typer(user_cli, name="user")
scans_cli = typer.Typer(help="Stored scans.", no_args_is_help=True)
cli.add_typer(scans_cli, name="scans")
console = Console(stderr=True, soft_wrap=True)

if TYPE_CHECKING:
    from sqlalchemy import Engine

QUEUES = ("qr", "qr_batch", "scans", "analytics", "default", "webhooks")


@cli.command(cls=PlainHelpCommand)
def migrate() -> None:
    """Apply database migrations (idempotent)."""
    from app.kit.migrate import upgrade

    upgrade(get_settings())
    console.print("database is up to date")


@cli.command(cls=PlainHelpCommand)
def rollup(
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Recount the buckets from the raw scans")] = False,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--from", formats=["%Y-%m-%d"], help="With --rebuild: the first UTC day to recount (default: all)"
        ),
    ] = None,
) -> None:
    """Fold stored scans into the analytics buckets now (beat does it every minute)."""
    from app.analytics import rollup as rollups
    from app.kit.db import sync_sessionmaker
    from app.kit.logging import configure_logging

    if since is not None and not rebuild:
        raise typer.BadParameter("--from goes with --rebuild", param_hint="--from")
    settings = get_settings()
    configure_logging(settings, service="cli")
    engine = _instance_engine(settings)
    try:
        sessions = sync_sessionmaker(engine)
        if rebuild:
            first_day, report = rollups.rebuild(sessions, since.date() if since else None)
            console.print(f"recounted the buckets from {first_day or 'the first scan'}")
        else:
            report = rollups.rollup(sessions, retention_days=settings.scan_retention_days)
    finally:
        engine.dispose()
    console.print(
        f"rolled up {report.folded} scans: watermark {report.watermark}, as of {report.as_of}"
        + (f", {report.purged} expired raw scans deleted" if report.purged else "")
    )


@scans_cli.command("reclassify", cls=PlainHelpCommand)
def scans_reclassify(
    since: Annotated[
        datetime | None,
        typer.Option("--since", formats=["%Y-%m-%d"], help="The first UTC day whose scans are judged (default: all)"),
    ] = None,
) -> None:
    """Judge stored scans again with the current crawler lists; fix scans_total and the analytics buckets."""
    from app.analytics.reclassify import reclassify
    from app.kit.db import sync_sessionmaker
    from app.kit.logging import configure_logging

    settings = get_settings()
    configure_logging(settings, service="cli")
    engine = _instance_engine(settings)
    try:
        report = reclassify(sync_sessionmaker(engine), since.date() if since else None)
    finally:
        engine.dispose()
    console.print(
        f"judged {report.examined} scans again: {report.changed} changed, scans_total moved by "
        f"{report.people_added:+d} over {report.links_changed} links"
        + (f", buckets recounted from {report.recounted_from}" if report.recounted_from else "")
    )


@cli.command(cls=PlainHelpCommand)
def api() -> None:
    """Run the HTTP gateway."""
    import uvicorn

    from app.gateway.server import BoundedHeadProtocol
    from app.kit.logging import configure_logging

    settings = get_settings()
    configure_logging(settings, service="gateway")
    uvicorn.run(
        "app.gateway.main:build",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        server_header=False,
        # X-Forwarded-For is believed only from QRFLOW_TRUSTED_PROXIES, by the app itself (gateway/main.py).
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        # httptools, with a bound on the size of a request's headers and the time to send them.
        http=BoundedHeadProtocol,
    )


def _celery(argv: list[str]) -> None:
    from celery.exceptions import SecurityWarning

    from workers.celery_app import celery_app

    if get_settings().instance_id:
        # Started by `qrflow up`, which says once for all its services that they run as root (launcher.py).
        warnings.filterwarnings("ignore", category=SecurityWarning)
    # --quiet drops Celery's ASCII-art banner; everything else is logged through structlog.
    sys.exit(celery_app.start(["--quiet", *argv]) or 0)


@cli.command(cls=PlainHelpCommand)
def worker(
    queues: Annotated[
        str,
        typer.Option("--queues", "-Q", help="Comma-separated: qr,qr_batch,scans,analytics,default,webhooks"),
    ] = ",".join(QUEUES),
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Pool processes; 0: one per core")] = 0,
    pool: Annotated[str, typer.Option(help="prefork for CPU work; threads for I/O-bound queues")] = "prefork",
) -> None:
    """Run a Celery worker on the given queues."""
    unknown = set(queues.split(",")) - set(QUEUES)
    if unknown:
        raise typer.BadParameter(f"unknown queue(s) {', '.join(sorted(unknown))}; known: {', '.join(QUEUES)}")
    settings = get_settings()
    os.nice(settings.worker_nice)  # the pool's processes inherit it
    processes = concurrency or settings.worker_concurrency or os.cpu_count() or 1
    name = f"{queues.replace(',', '+')}@%h"
    _celery(
        ["worker", f"--queues={queues}", f"--concurrency={processes}", f"--pool={pool}",
         f"--hostname={name}", f"--loglevel={settings.log_level}", "-O", "fair"]
    )


@cli.command(cls=PlainHelpCommand)
def beat() -> None:
    """Run Celery beat. Exactly one per deployment."""
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _celery(["beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}", f"--loglevel={settings.log_level}"])


def flower_password(settings: Settings) -> str:
    """The configured password; in development, one generated on first start and kept in data_dir."""
    configured = settings.flower_password.get_secret_value()
    if configured:
        return configured
    if settings.environment == "production":
        raise typer.BadParameter("set QRFLOW_FLOWER_PASSWORD: Flower will not run without a password in production")
    stored = settings.data_dir / "flower-password"
    if not stored.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        stored.write_text(secrets.token_urlsafe(12))
        stored.chmod(0o600)
    return stored.read_text().strip()


@cli.command(cls=PlainHelpCommand)
def flower() -> None:
    """Run Flower, behind basic auth, against the same Celery app."""
    from app.kit.logging import configure_logging

    settings = get_settings()
    password = flower_password(settings)
    configure_logging(settings, service="flower")
    _without_server_header()
    # Flower asks the workers about themselves as it starts, and warns for each question none answered:
    # four warnings whenever it starts before the workers do. Its dashboard shows a silent worker anyway.
    logging.getLogger("flower.inspector").setLevel(logging.ERROR)
    _celery(
        ["flower", "--logging=none", f"--address={settings.flower_host}", f"--port={settings.flower_port}",
         f"--basic-auth={settings.flower_user}:{password}", "--purge_offline_workers=60"]
    )


def _without_server_header() -> None:
    """Tornado names itself and its version in a Server header on every Flower response (RequestHandler.clear
    sets it; no option turns it off): removed, as the gateway sends none (server_header=False)."""
    from tornado.web import RequestHandler

    reset = RequestHandler.clear

    def clear(handler: RequestHandler) -> None:
        reset(handler)
        handler.clear_header("Server")

    RequestHandler.clear = clear  # type: ignore[method-assign]


@apikey_cli.command("create", cls=PlainHelpCommand)
def apikey_create(
    workspace: Annotated[str, typer.Option(help="The workspace's name (must exist, unless --create-workspace)")],
    scope: Annotated[
        Scope,
        typer.Option(help="read, write (includes read), admin (includes both), operator (admin and platform-wide)"),
    ] = Scope.WRITE,
    name: Annotated[str | None, typer.Option(help="A label to recognise the key by")] = None,
    create_workspace: Annotated[
        bool, typer.Option("--create-workspace", help="Create the workspace if there is none of that name")
    ] = False,
) -> None:
    """Issue an API key. It is printed once, on the last line of stdout; only its hash is stored."""
    from app.identity.service import UnknownWorkspace, issue_api_key

    try:
        plaintext = _with_session(
            lambda session: issue_api_key(session, workspace, scope, name, create_workspace=create_workspace)
        )
    except UnknownWorkspace as unknown:
        known = ", ".join(repr(n) for n in unknown.known) or "none"
        _fail(f"no workspace {unknown.name!r} (there are: {known}); add --create-workspace to create it")
    console.print(f"API key for workspace {workspace!r}, scope {scope.value} (shown once):")
    print(plaintext)


@apikey_cli.command("revoke", cls=PlainHelpCommand)
def apikey_revoke(prefix: Annotated[str, typer.Argument(help="The key's prefix: the part after qrf_")]) -> None:
    """Revoke an API key: every gateway refuses it within QRFLOW_API_KEY_CACHE_SECONDS (2 s)."""
    from app.identity.service import revoke_api_key

    if not _with_session(lambda session: revoke_api_key(session, prefix.removeprefix("qrf_").split("_")[0])):
        console.print(f"no active key with prefix {prefix!r}")
        raise typer.Exit(1)
    bound = get_settings().api_key_cache_seconds
    console.print(f"revoked key {prefix}" + (f"; gateways refuse it within {bound:g} s" if bound else ""))


@user_cli.command("create", cls=PlainHelpCommand)
def user_create(
    workspace: Annotated[str, typer.Option(help="The workspace's name (must exist, unless --create-workspace)")],
    email: Annotated[str, typer.Option(help="What they sign in with; unique on this instance")],
    role: Annotated[
        Role, typer.Option(help="viewer (reads), editor (also creates and changes), admin (also people and keys)")
    ] = Role.VIEWER,
    create_workspace: Annotated[
        bool, typer.Option("--create-workspace", help="Create the workspace if there is none of that name")
    ] = False,
) -> None:
    """Add a person to a workspace. Asks for their password on a terminal; otherwise prints a one-time
    password once, on the last line of stdout (only its hash is stored), which they replace at first sign-in."""
    from app.identity.passwords import one_time_password
    from app.identity.people import add_person, hash_new_password
    from app.identity.service import UnknownWorkspace, workspace_named
    from app.kit.errors import DomainError

    interactive = sys.stdin.isatty()
    password = (
        typer.prompt("Password (10 characters or more)", hide_input=True, confirmation_prompt=True)
        if interactive else one_time_password()
    )
    try:
        password_hash = hash_new_password(password)
        stored_email = _with_session(lambda session: add_person(
            session, workspace_named(session, workspace, create=create_workspace).id, email, role, password_hash,
            must_change_password=not interactive,
        ).email)
    except UnknownWorkspace as unknown:
        known = ", ".join(repr(n) for n in unknown.known) or "none"
        _fail(f"no workspace {unknown.name!r} (there are: {known}); add --create-workspace to create it")
    except DomainError as refused:
        _fail(refused.message)
    console.print(f"{stored_email} can sign in at {get_settings().public_base_url}/app, {role.value} of {workspace!r}")
    if not interactive:
        console.print("Password (shown once):")
        print(password)


def _with_session(use):  # noqa: ANN001, ANN202 - a tiny unit of work for CLI commands
    from app.kit.db import sync_sessionmaker

    engine = _instance_engine(get_settings())
    try:
        with sync_sessionmaker(engine).begin() as session:
            return use(session)
    finally:
        engine.dispose()


def _fail(message: str) -> NoReturn:
    console.print(message, markup=False, highlight=False)
    raise typer.Exit(1)


def _instance_engine(settings: Settings) -> Engine:
    """The database of the instance these settings name, as `qrflow up` finds it; one that is not there
    (another QRFLOW_DATA_DIR, a mistyped URL) is a message saying what to set, never an empty new one."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from app.kit.db import create_sync_engine

    same = (
        "run it with the QRFLOW_DATA_DIR (or QRFLOW_DATABASE_URL) that `qrflow up` runs with: it prints its data "
        "directory as Data"
    )
    url = make_url(settings.database_url)
    if settings.is_sqlite and url.database not in (None, "", ":memory:") and not Path(url.database).exists():
        _fail(f"no qrflow database at {url.database} (QRFLOW_DATA_DIR is {settings.data_dir}); {same}")
    engine = create_sync_engine(settings)
    try:
        tables = set(inspect(engine).get_table_names())
    except SQLAlchemyError as exc:
        engine.dispose()
        cause = getattr(exc, "orig", None) or exc
        _fail(f"cannot open the database {url.render_as_string(hide_password=True)}: {cause}; {same}")
    if "workspaces" not in tables:
        engine.dispose()
        _fail(f"the database {url.render_as_string(hide_password=True)} has no qrflow tables: `qrflow migrate` "
              f"creates them (`qrflow up` does on start), or {same}")
    return engine


@cli.command(cls=PlainHelpCommand)
def up(
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for the gateway to be ready")] = 90,
) -> None:
    """Run the whole platform on this machine: gateway, a worker per queue, beat and Flower."""
    from app.launcher import launch

    raise typer.Exit(launch(get_settings(), console, ready_timeout))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
