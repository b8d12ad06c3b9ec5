"""One structlog pipeline for the gateway, the workers, Celery's and uvicorn's own loggers.

Context (request_id in the gateway, task_id in workers) is bound with structlog.contextvars, and the
current OpenTelemetry span's trace_id/span_id are added, so every line logged while handling a request
or a task carries them.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from opentelemetry import trace

from app.kit.settings import Settings


def add_trace_context(_logger: object, _name: str, event_dict: dict) -> dict:
    """The current span's ids, in the hex form trace backends show, so a log line leads to its trace.

    Logging is synchronous, so the span current when a line is formatted is the one where it was logged.
    """
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", format(span_context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(span_context.span_id, "016x"))
    return event_dict


_SHARED_PROCESSORS: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    add_trace_context,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


# Field names whose values are secrets whatever they hold.
_SECRET_KEY = re.compile(r"authorization|password|passwd|secret|token|api_?key|cookie|session|csrf", re.IGNORECASE)
# Secrets inside any text (messages, exception text, tracebacks): credentials in a URL
# (postgresql://user:PASSWORD@host, redis://:PASSWORD@host), a bearer credential, a qrflow API key's secret.
_URL_CREDENTIALS = re.compile(r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)", re.IGNORECASE)
_BEARER = re.compile(r"(?P<keep>\bBearer\s+)[^\s'\",;]+", re.IGNORECASE)
_API_KEY = re.compile(r"(?P<keep>\bqrf_[A-Za-z0-9]+_)[A-Za-z0-9_-]+")
# A dashboard session cookie (a Cookie header quoted in a text), or a password or CSRF token in a form body
# or query string (a sign-in form's body in a validation error).
_FORM_SECRET = re.compile(
    r"(?P<keep>\b(?:qrflow_session|password|csrf_token)[\"']?\s*[=:]\s*[\"']?)[^&;\s\"',}]+", re.IGNORECASE
)
REDACTED = "[redacted]"


def redact_text(text: str) -> str:
    for pattern in (_URL_CREDENTIALS, _BEARER, _API_KEY, _FORM_SECRET):
        text = pattern.sub(lambda m: m.group("keep") + REDACTED, text)
    return text


def _redacted(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redacted(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(key, v) for v in value]
    return value


def redact_secrets(_logger: object, _name: str, event_dict: dict) -> dict:
    """No line carries a key, a password or a session: fields named like secrets are replaced, and
    credentials are cut out of every text, the formatted exception included (so runs after it)."""
    return {key: _redacted(key, value) for key, value in event_dict.items()}


def configure_logging(settings: Settings, *, service: str) -> None:
    renderer: structlog.typing.Processor
    if settings.log_renderer == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        # The exception arrives formatted as plain text (format_exc_info below, then redacted): the
        # renderer's own rich tracebacks would show every frame's local variables, keys and URLs included.
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    final_processors = [structlog.processors.format_exc_info, redact_secrets]

    structlog.configure(
        # Level first: a filtered-out debug line should cost a comparison, not a trip through the chain.
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED_PROCESSORS,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _add_service(service),
            *final_processors,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "celery", "celery.app.trace", "celery.worker", "flower", "tornado"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # The access log costs a quarter of a redirect's throughput; the request middleware logs instead.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _add_service(service: str) -> structlog.typing.Processor:
    def add(_logger: object, _name: str, event: dict) -> dict:
        event.setdefault("service", service)
        return event

    return add
