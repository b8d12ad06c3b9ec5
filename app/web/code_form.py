"""The new-code form: its fields, read from the API's own models (a kind's data model, Style, CreateURLCode),
and the form's values turned into the body POST /v1/qrcodes takes. Labels and help come from the models'
descriptions, validation from the models themselves: the form holds no rule of its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import FormData

from app.qrcodes.content import KIND_DATA
from app.qrcodes.schemas import CreateCode, CreateURLCode
from app.qrcodes.style import Style

# Names people know these fields by, where a property name alone would not say it.
_LABELS = {
    "data.ssid": "Network name (SSID)", "data.lat": "Latitude", "data.lng": "Longitude", "data.org": "Organisation",
    "data.url": "URL", "data.iban": "IBAN", "data.bic": "BIC", "data.phones": "Phone numbers (one a line)",
    "data.to": "To (email address)", "style.error": "Error correction", "style.scale": "Scale (pixels per module)",
    "style.border": "Border (modules)", "style.micro": "Micro QR", "style.logo_size": "Logo size",
    "dynamic": "Dynamic (a short link you can redirect later)", "max_scans": "Max scans",
    "expires_at": "Expires at", "forward_query": "Forward query string", "slug": "Slug",
    "tags": "Tags (comma-separated)",
}
_LINK_FIELDS = ("dynamic", "slug", "forward_query", "expires_at", "max_scans", "disabled")
_CODE = TypeAdapter(CreateCode)


@dataclass(frozen=True)
class FormField:
    name: str  # dotted path in the API's body: data.ssid, style.dark, title
    label: str
    input: str  # text, textarea, number, checkbox, select, lines
    help: str | None = None
    required: bool = False
    options: tuple[str, ...] = ()
    default: Any = None
    step: str | None = None

    @property
    def id(self) -> str:
        return "f-" + self.name.replace(".", "-")


@dataclass(frozen=True)
class CodeForm:
    kind: str
    data: list[FormField]
    link: list[FormField]
    style: list[FormField]
    about: list[FormField] = field(default_factory=list)

    @property
    def fields(self) -> list[FormField]:
        return [*self.data, *self.link, *self.style, *self.about]


def code_form(kind: str) -> CodeForm:
    data = _fields(KIND_DATA[kind], "data.")
    link = _fields(CreateURLCode, "", only=_LINK_FIELDS) if kind == "url" else []
    style = [f for f in _fields(Style, "style.") if f.name != "style.logo"]
    about = [
        FormField("title", "Title", "text", "Shown in the dashboard and the API; not in the code."),
        FormField("tags", _LABELS["tags"], "text", "Up to 20, to find and filter codes."),
    ]
    return CodeForm(kind, data, link, style, about)


def _fields(model: type[BaseModel], prefix: str, only: tuple[str, ...] | None = None) -> list[FormField]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    found = []
    for name, spec in schema["properties"].items():
        if only is not None and name not in only:
            continue
        types = {s.get("type") for s in spec.get("anyOf", [spec])} - {None, "null"}
        enum = spec.get("enum")
        if enum:
            widget = "select"
        elif "boolean" in types:
            widget = "checkbox"
        elif "array" in types:
            widget = "lines"
        elif types <= {"number", "integer"}:
            widget = "number"
        elif name in ("text", "body", "description", "memo", "address"):
            widget = "textarea"
        else:
            widget = "text"
        dotted = prefix + name
        label = _LABELS.get(dotted) or spec.get("title") or name.replace("_", " ").capitalize()
        found.append(
            FormField(
                dotted, label, widget, spec.get("description"), name in required, tuple(enum or ()),
                spec.get("default"), "any" if "number" in types else None,
            )
        )
    return found


def request_body(form: CodeForm, values: FormData) -> dict[str, Any]:
    """The JSON body POST /v1/qrcodes would get: empty fields left out (the API's defaults apply)."""
    body: dict[str, Any] = {"kind": form.kind}
    for spec in form.fields:
        if spec.input == "checkbox":
            value: Any = spec.name in values
        else:
            raw = values.get(spec.name)
            if not isinstance(raw, str) or not raw.strip():
                continue
            if spec.input == "lines":
                value = [line.strip() for line in raw.splitlines() if line.strip()]
            elif spec.name == "tags":
                value = [tag.strip() for tag in raw.split(",") if tag.strip()]
            else:
                value = raw
        _put(body, spec.name, value)
    logo = values.get("style.logo")
    if isinstance(logo, str) and logo:
        _put(body, "style.logo", logo)
    return body


def _put(body: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        body = body.setdefault(part, {})
    body[last] = value


def validate(body: dict[str, Any]) -> tuple[CreateCode | None, dict[str, str]]:
    """The request, or the API's validation messages by the field they name (data.url, style.dark, …)."""
    try:
        return _CODE.validate_python(body), {}
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            loc = [str(part) for part in error["loc"]]
            if loc and loc[0] in KIND_DATA:
                loc = loc[1:]  # the union's tag
            name = ".".join(loc) or "form"
            message = error["msg"].removeprefix("Value error, ")
            errors.setdefault(name, message)
        return None, errors
