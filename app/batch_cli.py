"""`qrflow batch create FILE.csv`: a batch through a running gateway (over HTTP, like any client), with a
progress bar until its archive is saved.

Exit codes: 0 every code rendered and the archive saved; 3 the batch was refused (bad rows are printed
as a table; nothing was created); 4 the archive is saved but some rows were rejected (--partial) or some
codes failed to render; 1 anything else (gateway unreachable, bad key, server error, timeout); 2 usage.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from app.cli_help import PlainHelpCommand

batch_cli = typer.Typer(help="Create many codes at once from a CSV file.", no_args_is_help=True)

OK, FAILED, REFUSED, PARTLY = 0, 1, 3, 4
# Transient faults (connection refused, 5xx, 409 in flight) are retried this often, with the same
# Idempotency-Key: a retry of a POST that did get through returns its batch and creates nothing.
_ATTEMPTS = 5
_SHOWN_ERRORS = 50


class Failed(Exception):
    """The batch could not be completed; the message says why, for people."""


@batch_cli.command("create", cls=PlainHelpCommand)
def create(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            metavar="FILE",
            help="CSV: a header row (kind, url, text, …), then one code per row; or JSON as POST /v1/batches "
            "takes it ({\"items\": [...]})",
        ),
    ],
    formats: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help="Image formats in the archive, comma-separated: png, svg, pdf, eps (default png,svg)"
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to save the zip; default FILE's name with .zip"),
    ] = None,
    url: Annotated[str | None, typer.Option(help="The gateway; default http://QRFLOW_API_HOST:QRFLOW_API_PORT")] = None,
    key: Annotated[
        str | None,
        typer.Option(envvar="QRFLOW_API_KEY", help="An API key with write scope (or QRFLOW_API_KEY)"),
    ] = None,
    partial: Annotated[
        bool,
        typer.Option("--partial", help="Create the valid rows even if others are invalid"),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the batch to finish")] = 3600,
) -> None:
    """Create a code per CSV row (or JSON item) through the gateway, wait for every image, save the zip."""
    import httpx

    from app.kit.settings import get_settings

    console = Console(stderr=True, soft_wrap=True)
    if formats is not None:
        _check_formats(formats)
    if not key:
        console.print(
            "[red]an API key is needed: --key or QRFLOW_API_KEY (qrflow apikey create --workspace NAME)[/red]"
        )
        raise typer.Exit(2)
    if url is None:
        settings = get_settings()
        host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
        url = f"http://{host}:{settings.api_port}"
    target = out or file.with_suffix(".zip")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, timeout=httpx.Timeout(60, connect=5)) as client:
        code = run(client, headers, file.read_bytes(), formats, target, partial, console, timeout)
    raise typer.Exit(code)


def run(
    client: Any,
    headers: dict[str, str],
    body: bytes,
    formats: str | None,
    out: Path,
    partial: bool,
    console: Console,
    timeout: float,
    poll_seconds: float = 0.5,
) -> int:
    """The command's work, on any httpx-like client (tests pass the gateway's TestClient)."""
    try:
        response = _post(client, headers, body, formats, partial)
        if response.status_code != 202:
            return _refused(response, console)
        batch = response.json()
        rejected = f", {batch['rejected']:,} rows rejected" if batch["rejected"] else ""
        console.print(f"batch {batch['id']}: {batch['total']:,} codes" + rejected)
        batch = _wait(client, headers, batch, console, timeout, poll_seconds)
        size = _download(client, headers, batch, out, console)
    except Failed as exc:
        console.print(f"[red]{exc}[/red]")
        return FAILED
    console.print(
        f"saved {out} ({size:,} bytes): {batch['done']:,} codes in {', '.join(batch['formats'])} and manifest.csv"
    )
    if batch["errors"]:
        _error_table(batch["errors"], batch["errors_total"], console, "not in the archive")
    return PARTLY if batch["failed"] or batch["rejected"] else OK


def _check_formats(formats: str) -> None:
    from app.qrcodes.schemas import IMAGE_FORMATS

    unknown = [f for f in formats.split(",") if f.strip().lower() not in IMAGE_FORMATS]
    if unknown:
        raise typer.BadParameter(
            f"{', '.join(unknown)}: the formats are {', '.join(IMAGE_FORMATS)}", param_hint="--format"
        )


def _is_json(body: bytes) -> bool:
    """A JSON batch ({"items": [...]}, as POST /v1/batches takes it); anything else is sent as CSV."""
    return body.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] in (b"{", b"[")


def _post(client: Any, headers: dict[str, str], body: bytes, formats: str | None, partial: bool) -> Any:
    is_json = _is_json(body)
    # A JSON body may name its formats itself; the gateway refuses them given twice.
    formats = formats or (None if is_json else "png,svg")
    params = {**({"formats": formats} if formats else {}), **({"partial": "true"} if partial else {})}
    content_type = "application/json" if is_json else "text/csv"
    request_headers = {**headers, "Content-Type": content_type, "Idempotency-Key": str(uuid.uuid4())}
    return _retrying(lambda: client.post("/v1/batches", content=body, params=params, headers=request_headers))


def _retrying(send: Any) -> Any:
    import httpx

    for attempt in range(_ATTEMPTS):
        try:
            response = send()
        except httpx.TransportError as exc:
            problem = f"cannot reach the gateway: {exc!r}"
        else:
            if response.status_code < 500 and response.status_code not in (409, 429) or attempt == _ATTEMPTS - 1:
                return response
            problem = f"HTTP {response.status_code}"
        if attempt == _ATTEMPTS - 1:
            raise Failed(problem)
        time.sleep(min(2**attempt, 10))
    raise AssertionError("unreachable")


def _refused(response: Any, console: Console) -> int:
    try:
        error = response.json()
    except ValueError:
        error = {"message": response.text[:500]}
    console.print(f"[red]HTTP {response.status_code}: {error.get('message', '')}[/red]")
    rows = [e for e in error.get("errors", []) if "row" in e]
    if rows:
        _error_table(rows, len(rows), console, "nothing was created; fix them, or --partial to create the valid rows")
    return REFUSED if response.status_code in (413, 415, 422) else FAILED


def _error_table(errors: list[dict], total: int, console: Console, note: str) -> None:
    from rich.table import Table

    table = Table(title=f"{total:,} error(s): {note}", title_justify="left")
    for column in ("row", "field", "message"):
        table.add_column(column, overflow="fold")
    for error in errors[:_SHOWN_ERRORS]:
        table.add_row(str(error.get("row", "")), error["field"], error["message"])
    console.print(table)
    if total > _SHOWN_ERRORS:
        console.print(f"… and {total - _SHOWN_ERRORS:,} more (manifest.csv in the archive lists every row)")


def _wait(
    client: Any, headers: dict[str, str], batch: dict, console: Console, timeout: float, poll_seconds: float
) -> dict:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    deadline, url = time.monotonic() + timeout, f"/v1/batches/{batch['id']}"
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("rendering", total=batch["total"])
        while True:
            response = _retrying(lambda: client.get(url, headers=headers))
            if response.status_code != 200:
                raise Failed(f"HTTP {response.status_code} reading the batch: {response.text[:300]}")
            batch = response.json()
            completed = batch["done"] + batch["failed"] + batch["deleted"]
            progress.update(task, completed=completed, description=batch["status"])
            if batch["status"] in ("done", "failed"):
                return batch
            if time.monotonic() > deadline:
                raise Failed(f"the batch is not finished after {timeout:.0f} s ({batch['pending']:,} codes pending); "
                             f"GET /v1/batches/{batch['id']} shows its progress")
            time.sleep(poll_seconds)


def _download(client: Any, headers: dict[str, str], batch: dict, out: Path, console: Console) -> int:
    """The archive into a file beside `out`, renamed into place once complete: never half a zip at `out`."""
    import httpx
    from rich.progress import DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    partial_file = out.with_name(out.name + ".part")
    with Progress(TextColumn("archive"), DownloadColumn(), TransferSpeedColumn(), console=console) as progress:
        task = progress.add_task("archive", total=None)
        try:
            with client.stream("GET", batch["archive"], headers=headers) as response:
                if response.status_code != 200:
                    response.read()
                    raise Failed(f"HTTP {response.status_code} downloading the archive: {response.text[:300]}")
                size = 0
                with partial_file.open("wb") as file:
                    for chunk in response.iter_bytes():
                        file.write(chunk)
                        size += len(chunk)
                        progress.update(task, completed=size)
        except httpx.TransportError as exc:
            partial_file.unlink(missing_ok=True)
            raise Failed(f"the download broke off: {exc!r}") from exc
        except BaseException:
            partial_file.unlink(missing_ok=True)
            raise
    os.replace(partial_file, out)
    return size
