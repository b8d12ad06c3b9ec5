"""Every error is JSON: {"code": machine-readable, "message": for people, naming the field, "errors": [...]}."""

from __future__ import annotations

import json
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from app.kit.errors import DomainError
from app.qrcodes.content import KINDS

log = structlog.get_logger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


# --- the documented shape ------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    # Absent (never null) but in a batch's errors.
    row: int | SkipJsonSchema[None] = Field(
        None,
        description=(
            "POST /v1/batches: the row at fault (JSON: the item's position from 1; CSV: its line, the header being 1)."
        ),
    )
    field: str = Field(description="The field at fault, dotted (`data.url`, `style.scale`); `body` for the whole body.")
    type: str = Field(description="Machine-readable: `missing`, `value_error`, `json_invalid`, `less_than_equal`, …")
    message: str


class ErrorBody(BaseModel):
    """Every error the API answers with, whatever its status."""

    code: str = Field(
        description="Machine-readable: `validation_error` (every 422 but `payload_too_long`), `unauthorized`, "
        "`forbidden`, `not_found`, `gone`, `slug_taken`, `not_ready`, `too_large`, `rate_limited`, …"
    )
    message: str = Field(description="For people; names the field at fault, if any.")
    errors: list[ErrorDetail] = Field(
        default_factory=list, description="One entry per bad field; empty when no single field is at fault."
    )


_DESCRIPTIONS = {
    401: "Missing, malformed, invalid or revoked API key",
    403: "The API key's scope does not allow this (a read key writing)",
    404: "No such code in this workspace",
    409: "Conflict",
    413: "The request body is larger than the gateway accepts",
    422: "Invalid input: `errors` names each bad field",
    429: "Rate limit exceeded: retry after `Retry-After` seconds",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "required": True, "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "description": "Seconds until a retry can succeed", "required": True, "schema": {"type": "integer"}
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds until a retry may succeed", "required": True, "schema": {"type": "integer"}
        }
    },
}


def error_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with the ErrorBody schema; `_409="…"` overrides a description."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "model": ErrorBody,
            "description": descriptions.get(f"_{status}", _DESCRIPTIONS.get(status, "Error")),
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        responses[status] = response
    return responses


_REF = "#/components/schemas/"
_FASTAPI_VALIDATION_ERROR = _REF + "HTTPValidationError"


def _document_error_bodies(app: FastAPI) -> None:
    """FastAPI documents its own 422 shape (HTTPValidationError) on every route with parameters; the handler
    below answers with ErrorBody, so the document must say ErrorBody, for routes to come as well."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for path_item in document.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.get("responses", {}) if isinstance(operation, dict) else {}
                schema = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
                if schema.get("$ref") == _FASTAPI_VALIDATION_ERROR:
                    responses["422"] = {
                        "description": _DESCRIPTIONS[422],
                        "content": {"application/json": {"schema": {"$ref": _REF + "ErrorBody"}}},
                    }
        if "ErrorBody" not in schemas:
            body = ErrorBody.model_json_schema(ref_template=_REF + "{model}", mode="serialization")
            for name, definition in body.pop("$defs", {}).items():
                schemas.setdefault(name, definition)
            schemas["ErrorBody"] = body
        for name in ("HTTPValidationError", "ValidationError"):  # the second is only used by the first
            if f'"{_REF}{name}"' not in json.dumps(document):
                schemas.pop(name, None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


# --- the handlers --------------------------------------------------------------------------------------


def error_body(code: str, message: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    # `errors` always, empty when no single field is at fault: one shape for every error a client handles.
    return {"code": code, "message": message, "errors": errors or []}


def _field(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    # A discriminated union puts the tag (the kind) in the location; it is not a field.
    if loc and loc[0] == "body" and parts and parts[0] in KINDS:
        parts = parts[1:]
    return ".".join(str(p) for p in parts) or "body"


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        if error["type"] == "json_invalid":
            errors.append({"field": "body", "type": "json_invalid", "message": "the body is not valid JSON"})
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "union_tag_invalid":
            message = f"unknown kind; expected one of: {', '.join(KINDS)}"
        elif error["type"] == "union_tag_not_found":
            message = f"kind is required; one of: {', '.join(KINDS)}"
        field = _field(tuple(error["loc"]))
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            field = "kind"
        errors.append({"field": field, "type": error["type"], "message": message})
    return errors


# UnicodeDecodeError is a ValueError; so is int()'s "Exceeds the limit (4300 digits)".
_UNDECODABLE = (ValueError, RecursionError)


def _undecodable_message(cause: BaseException) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return "the body is not valid JSON: it is not UTF-8"
    if isinstance(cause, RecursionError):
        return "the body is not valid JSON: it is nested too deeply"
    if "digits" in str(cause):
        return "the body is not valid JSON: a number in it has too many digits"
    return "the body is not valid JSON"


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]] = (),
    errors: list[dict[str, Any]] | None = None,
) -> None:
    """An error answered from pure ASGI middleware, before FastAPI's handlers could see the request."""
    body = json.dumps(error_body(code, message, errors)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def install_error_handlers(app: FastAPI) -> None:
    """Answers every error with ErrorBody, and makes the OpenAPI document say so."""
    _document_error_bodies(app)

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        errors = exc.details or (
            [{"field": exc.field, "type": exc.code, "message": exc.message}] if exc.field else None
        )
        message = f"{exc.field}: {exc.message}" if exc.field else exc.message
        return JSONResponse(error_body(exc.code, message, errors), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse(error_body("validation_error", message, errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, _UNDECODABLE):
            # FastAPI answers 400 when json.loads fails with anything but JSONDecodeError: a body that is
            # not UTF-8, an integer over Python's 4300-digit limit, nesting deeper than the recursion
            # limit. Those are malformed JSON too, and malformed JSON is a 422 like any other bad input.
            errors = [{"field": "body", "type": "json_invalid", "message": _undecodable_message(exc.__cause__)}]
            return JSONResponse(
                error_body("validation_error", f"body: {errors[0]['message']}", errors), status_code=422
            )
        code = _HTTP_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else code
        return JSONResponse(error_body(code, detail), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(OperationalError)
    async def _database_busy(request: Request, exc: OperationalError) -> JSONResponse:
        # SQLite's write lock still held by another process when the busy timeout ran out: a moment's
        # overload, said as such (writers keep their transactions far shorter: issue #21).
        if "database is locked" in str(exc.orig):
            log.warning("database_busy", path=request.url.path)
            body = error_body("busy", "the database is busy; retry in a moment")
            return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error=repr(exc))
        return JSONResponse(error_body("internal_error", "an internal error occurred"), status_code=500)
