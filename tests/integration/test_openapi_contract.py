"""The OpenAPI document is a contract, and schemathesis holds the gateway to it.

For every documented operation schemathesis generates requests from the schema (valid ones, invalid ones:
wrong types, missing and extra fields, huge numbers, odd Unicode; and the boundary values of its coverage
phase), they are sent with a write-scope key to the real app on each backend (a real worker renders what
gets created), and every response is checked: no 5xx, a documented status code and content type, a body
that matches the documented schema, the documented headers.

Two things are added to what schemathesis draws, in its hooks:
- path parameters are often real: ready, pending and deletable codes, a live slug and a deleted one, so
  the 200, 204, 302, 409 and 410 answers are checked too, not only 404;
- half the bodies, queries and slugs get a hostile character in one of their strings, NUL above all:
  PostgreSQL cannot store it, which only a valid request carrying one reaches;
- dates at the ends of datetime's range in `from`, `to` and list cursors, with the time zones furthest
  from UTC (issue #13: 9999-12-31T23:59:59-14:00 in a cursor was a 500).

Bounded: MAX_EXAMPLES per operation, no deadline (the machine is shared), and the coverage phase's valid
bodies for POST are left out (see CONFIG): 20-30 s per backend.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.gateway.main import create_app
from tests.conftest import wait_until_rendered

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
MAX_EXAMPLES = 50

# The document the gateway serves; `test_the_tested_document_is_the_served_one` holds the two together.
# It is built here, at collection, because schemathesis parametrizes from a schema it can see then: its lazy
# `schemathesis.pytest.from_fixture` loader does not run on pytest 9.2 (it sets `Function._nodeid`, which
# pytest 9.2 no longer has), and /metrics is not part of the document, so it is not tested.
DOCUMENT = create_app().openapi()
CONFIG = {
    # The coverage phase's valid bodies for POST /v1/qrcodes are ~350 codes per run, every one rendered by
    # the worker in this process: a minute on its own. Valid creates still come from the examples and the
    # fuzzing phase; the coverage phase keeps all its invalid bodies, and everything for the other operations.
    "operations": [
        {"include-name": "POST /v1/qrcodes", "phases": {"coverage": {"generation": {"mode": "negative"}}}},
        # A batch's items are POST /v1/qrcodes bodies, whose every variant the line above already covers; over
        # items, the coverage phase sends ~2,800 requests (JSON and CSV), 50 s per backend. Examples and
        # fuzzing still run; bad rows, CSV and the envelope are tested in tests/*/test_batch*.py.
        {"include-name": "POST /v1/batches", "phases": {"coverage": {"enabled": False}}},
    ],
}
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict(CONFIG))

# Real ids and slugs for the backend under test, filled by the `known` fixture before any case is drawn.
KNOWN: dict[str, list[str]] = {}


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


# Characters that break storage and text handling, put into generated strings (of valid requests as well as
# invalid ones, so they get past validation): NUL above all, which PostgreSQL's text and JSON types cannot
# hold (SQLite stores it), then bidi and zero-width controls, an astral character, a line break.
HOSTILE = ("\x00", "\x00", "\x00", "\u202e\u200b", "\U0001f44d\U0001f3fd", "\r\n")


def _string_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _string_paths(item, (*path, key))]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in _string_paths(item, (*path, index))]
    return []


def _replaced(value: Any, path: tuple[Any, ...], leaf: str) -> Any:
    if not path:
        return leaf
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], leaf)
    return copy


def _hostile(value: Any, exclude: tuple[str, ...] = ()) -> st.SearchStrategy:
    """The value as generated, or with a hostile character put into one of its strings."""
    paths = [p for p in _string_paths(value) if not (p and p[0] in exclude)]
    if not paths:
        return st.just(value)

    @st.composite
    def tainted(draw: st.DrawFn) -> Any:
        path = draw(st.sampled_from(paths))
        leaf = value
        for key in path:
            leaf = leaf[key]
        at = draw(st.integers(0, len(leaf)))
        return _replaced(value, path, leaf[:at] + draw(st.sampled_from(HOSTILE)) + leaf[at:])

    return st.one_of(st.just(value), tainted())


# Strings an enum or a pattern constrains refuse any character they do not list: a NUL there tests nothing.
_CONSTRAINED = ("kind", "style", "slug")


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy:
    return _hostile(body, exclude=_CONSTRAINED)


# Instants and zones where converting to UTC, or stepping a day or an hour, leaves datetime's range.
EDGE_INSTANTS = (
    "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59", "0001-01-01T00:00:00",
    "9999-12-31", "0001-01-01", "9999-12-30", "9999-12-31T23:00", "0001-01-01T00:00:00Z",
)
EDGE_ZONES = ("Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kolkata", "UTC")


def forged_cursor(created_at: str) -> str:
    """A list cursor as the API encodes one (app/qrcodes/repository.py), holding any instant."""
    raw = json.dumps([created_at, str(uuid.uuid4())]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_EDGES = {
    "from": st.sampled_from(EDGE_INSTANTS),
    "to": st.sampled_from(EDGE_INSTANTS),
    "tz": st.sampled_from(EDGE_ZONES),
    "cursor": st.sampled_from(EDGE_INSTANTS).map(forged_cursor),
}


def _at_the_edges(context: schemathesis.HookContext, query: dict[str, Any] | None) -> st.SearchStrategy:
    """The query with some of its date parameters (those the operation has) at the edges of time."""
    names = [p.name for p in context.operation.query if p.name in _EDGES]
    if not names:
        return st.just(query)
    chosen = st.lists(st.sampled_from(names), min_size=1, unique=True)
    return chosen.flatmap(lambda keys: st.fixed_dictionaries({key: _EDGES[key] for key in keys})).map(
        lambda edges: {**(query or {}), **edges}
    )


@schema.hook
def flatmap_query(context: schemathesis.HookContext, query: dict[str, Any] | None) -> st.SearchStrategy:
    return st.one_of(_hostile(query) if query else st.just(query), _at_the_edges(context, query))


@schema.hook
def flatmap_path_parameters(context: schemathesis.HookContext, path_parameters: dict[str, Any] | None) -> Any:
    """Often a real id or slug instead of the generated one (not when that is not even a UUID), and hostile
    characters in slugs (an id with one is just not a UUID)."""
    if not KNOWN or not path_parameters:
        return st.just(path_parameters)
    if _is_uuid(path_parameters.get("code_id")):
        pool = KNOWN["deletable" if context.operation.method.lower() == "delete" else "codes"]
        name = "code_id"
    elif "slug" in path_parameters:
        pool, name = KNOWN["slugs"], "slug"
    else:
        return st.just(path_parameters)
    real = st.sampled_from(pool).map(lambda value: {**path_parameters, name: value})
    return st.one_of(_hostile(path_parameters, exclude=("code_id",)), real)


def _insert_pending_code(backend, workspace: str) -> str:
    """A code no worker will render (no event is published for it): its images answer 409."""
    from sqlalchemy import select

    from app.identity.models import Workspace
    from app.kit.db import create_sync_engine, sync_sessionmaker
    from app.qrcodes.models import QRCode

    engine = create_sync_engine(backend.settings)
    with sync_sessionmaker(engine).begin() as session:
        workspace_id = session.scalar(select(Workspace.id).where(Workspace.name == workspace))
        code = QRCode(
            workspace_id=workspace_id, kind="text", data={"text": "pending"}, content="pending",
            style={"error": "M", "scale": 10, "border": 4, "dark": "#000000", "light": "#ffffff", "micro": False},
        )
        session.add(code)
    engine.dispose()
    return str(code.id)


@pytest.fixture(scope="module")
def known(gateway, alice, backend):
    def create(body: dict) -> dict:
        response = gateway.post("/v1/qrcodes", json=body, headers=alice.headers)
        assert response.status_code == 202, response.text
        return response.json()

    live = create({"kind": "url", "data": {"url": "https://example.com/live"}, "slug": f"live-{uuid.uuid4().hex[:8]}"})
    gone = create({"kind": "url", "data": {"url": "https://example.com/gone"}, "slug": f"gone-{uuid.uuid4().hex[:8]}"})
    static = create({"kind": "text", "data": {"text": "contract"}, "title": "contract", "tags": ["contract"]})
    deletable = [create({"kind": "phone", "data": {"number": "+1 555 0100"}})["id"] for _ in range(3)]
    for code in (live, gone, static):
        assert wait_until_rendered(gateway, alice, code["id"])["status"] == "ready"
    assert gateway.delete(f"/v1/qrcodes/{gone['id']}", headers=alice.headers).status_code == 204

    KNOWN.update(
        codes=[live["id"], static["id"], _insert_pending_code(backend, alice.workspace)],
        deletable=deletable,
        slugs=[live["slug"], gone["slug"]],
    )
    yield KNOWN
    KNOWN.clear()


def _as_httpx(kwargs: dict[str, Any]) -> dict[str, Any]:
    """schemathesis prepares requests-style arguments; the TestClient is httpx."""
    request: dict[str, Any] = {
        "method": kwargs.pop("method"), "url": kwargs.pop("url"), "headers": dict(kwargs.pop("headers"))
    }
    if (params := kwargs.pop("params", None)) is not None:
        request["params"] = params
    if cookies := kwargs.pop("cookies", None):
        request["cookies"] = cookies
    if "json" in kwargs:
        request["json"] = kwargs.pop("json")
    if "data" in kwargs:
        data = kwargs.pop("data")
        request["content" if isinstance(data, (bytes, str)) else "data"] = data
    if "files" in kwargs:
        request["files"] = kwargs.pop("files")
    assert not kwargs, f"request arguments not passed on: {sorted(kwargs)}"
    return request


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_document(case, gateway, alice, known):
    # The session-scoped TestClient, not schemathesis's own ASGI client: that one would run the app's lifespan
    # a second time in another event loop and replace the engine every other test shares.
    request = _as_httpx(case.as_transport_kwargs(base_url=str(gateway.base_url), headers=alice.headers))
    response = gateway.request(**request, follow_redirects=False)
    case.validate_response(response, checks=CHECKS)


def test_the_tested_document_is_the_served_one(gateway):
    assert gateway.get("/openapi.json").json() == DOCUMENT


def test_every_error_response_is_documented_with_the_error_body():
    """Not FastAPI's own 422 shape (HTTPValidationError), which the API never sends. The exceptions:
    /readyz's 503 is its readiness report, naming what is unavailable; the redirect answers people with
    a page and programs (Accept: application/json) with the error body."""
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    as_json = {"application/json": {"schema": error_body}}
    for_people_too = {**as_json, "text/html": {"schema": {"type": "string"}}}
    for path, path_item in DOCUMENT["paths"].items():
        for method, operation in path_item.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and (path, status) != ("/readyz", "503"):
                    expected = for_people_too if path == "/r/{slug}" else as_json
                    assert response["content"] == expected, (method, path, status)
    assert "HTTPValidationError" not in DOCUMENT["components"]["schemas"]
    assert set(DOCUMENT["components"]["schemas"]["ErrorBody"]["required"]) == {"code", "message"}
