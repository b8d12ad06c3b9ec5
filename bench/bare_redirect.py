"""The yardstick of bench/redirect.py (not a benchmark itself): a bare Starlette route answering
/r/{slug} with the gateway's 302 (Location, Cache-Control: no-store), and nothing else: no link look-up,
no scan recorded, no metrics. bench/redirect.py serves it with uvicorn as `qrflow api` serves the gateway.

    uvicorn bench.bare_redirect:app --no-access-log --no-server-header
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TARGET = "https://example.com/landing"


async def redirect(request: Request) -> Response:
    return Response(status_code=302, headers={"location": TARGET, "cache-control": "no-store"})


app = Starlette(routes=[Route("/r/{slug}", redirect, methods=["GET", "HEAD"])])
