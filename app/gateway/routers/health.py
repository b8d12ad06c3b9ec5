"""Liveness and readiness for orchestrators and `qrflow up`."""

from __future__ import annotations

import asyncio
from typing import Literal

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from app.kit.instance import INSTANCE_HEADER

router = APIRouter(tags=["health"])
_CHECK_TIMEOUT = 2.0


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    database: str = Field(description="`ok`, or `unavailable: <error type>`")
    broker: str = Field(description="Celery's broker (Redis, or RabbitMQ): `ok`, or `unavailable: <error type>`")
    redis: str | None = Field(
        None, description="Only when RabbitMQ is the broker: Redis (caches, limits, results), as `broker`"
    )


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: the body names what is unavailable"}},
    summary="The database and the broker are reachable (503 names what is not)",
)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state

    async def database() -> None:
        async with state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def redis() -> None:
        await state.redis.ping()

    async def rabbitmq() -> None:
        await anyio.to_thread.run_sync(_connect, state.settings.celery_broker_url)

    checks = {"database": database, "broker": redis}
    if state.settings.broker_is_rabbitmq:
        checks.update(broker=rabbitmq, redis=redis)
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(), _CHECK_TIMEOUT)
            results[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; the message says which and why
            results[name] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in results.values())
    # `qrflow up` waits for its own gateway, not for whatever answers on the port (app/kit/instance.py).
    headers = {INSTANCE_HEADER: state.settings.instance_id} if state.settings.instance_id else None
    body = {"status": "ready" if ready else "unavailable", **results}
    return JSONResponse(body, status_code=200 if ready else 503, headers=headers)


def _connect(url: str) -> None:
    from kombu import Connection

    with Connection(url, connect_timeout=_CHECK_TIMEOUT) as connection:
        connection.connect()
