"""Wires the dashboard into the gateway: its static files, its page routers, and `/` → /app."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Mount

from app.kit.errors import DomainError
from app.web import analytics_pages, batch_pages, code_page, codes, new_code
from app.web.assets import URL_PREFIX, StaticAssets
from app.web.auth import install_auth_handlers
from app.web.pages import account
from app.web.templating import Pages

_root = APIRouter(include_in_schema=False)


@_root.get("/")
async def front_door() -> RedirectResponse:
    """People who open the gateway's address land on the dashboard (programs call /v1/…)."""
    return RedirectResponse("/app", status_code=303)


@_root.get("/app")
async def dashboard_home() -> RedirectResponse:
    return RedirectResponse("/app/codes", status_code=303)


def install(app: FastAPI) -> None:
    page_routers = [  # /codes/new before /codes/{id}
        account.router, new_code.router, codes.router, code_page.router, analytics_pages.router, batch_pages.router,
    ]
    assets = StaticAssets()
    pages = Pages(assets)
    app.state.pages = pages
    _answer_errors_with_pages(app, pages)
    install_auth_handlers(app)  # no session: the sign-in page; a refusal: a 403 page
    # Before the page routes, so /app/static/… is never taken for a page.
    app.router.routes.append(Mount(URL_PREFIX.rstrip("/"), app=assets))
    app.include_router(_root)
    for router in page_routers:
        app.include_router(router)


def _answer_errors_with_pages(app: FastAPI, pages: Pages) -> None:
    """Errors of a dashboard page are pages, with the message the API would give; elsewhere, JSON as before."""
    for exc_class in (DomainError, RequestValidationError, StarletteHTTPException):
        json_handler = app.exception_handlers[exc_class]

        async def handle(request: Request, exc: Exception, json_handler=json_handler) -> Response:
            status = getattr(exc, "status", None) or getattr(exc, "status_code", 422)
            if not _is_page(request.url.path) or status < 400:
                return await json_handler(request, exc)
            message = getattr(exc, "message", None) or getattr(exc, "detail", None)
            if isinstance(exc, RequestValidationError):
                message = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors())
            return pages.render(
                request, "error.html", status_code=status, heading=_HEADINGS.get(status, "Something went wrong"),
                message=str(message),
            )

        app.add_exception_handler(exc_class, handle)


_HEADINGS = {403: "Not allowed", 404: "Not found", 409: "Not possible now", 413: "Too large", 422: "Invalid input"}


def _is_page(path: str) -> bool:
    return (path == "/app" or path.startswith("/app/")) and not path.startswith(URL_PREFIX)
