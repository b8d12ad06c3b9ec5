"""The Jinja2 environment of the dashboard: autoescaped, with the hashed static URLs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from app.web.assets import StaticAssets

TEMPLATE_DIR = Path(__file__).parent / "templates"


class Pages:
    """Renders the dashboard's templates. Every user-supplied string is escaped by Jinja's autoescape."""

    def __init__(self, assets: StaticAssets) -> None:
        self.environment = Environment(
            loader=FileSystemLoader(TEMPLATE_DIR),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.environment.globals["static"] = assets.url
        self.environment.filters["when"] = _when

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("person", getattr(request.state, "person", None))
        context.setdefault("section", None)
        html = self.environment.get_template(template).render(request=request, **context)
        return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else ""


async def get_pages(request: Request) -> Pages:
    return request.app.state.pages


PagesDep = Annotated[Pages, Depends(get_pages)]
