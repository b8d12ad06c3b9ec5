"""No log line, JSON or console, carries an API key, a password or a session (issue #13, item 10): not as a
field, not in a message, not in a traceback's text, and no traceback shows local variables."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from app.kit.logging import configure_logging
from app.kit.settings import Settings

SECRET = "s3cr3tS3cr3tS3cr3tS3cr3t"
API_KEY = f"qrf_deadbeef_{SECRET}"
DATABASE_URL = f"postgresql+psycopg://qrflow:{SECRET}@db.internal:5432/qrflow"
REDIS_URL = f"redis://:{SECRET}@cache.internal:6379/0"


def fails_with_secrets_in_its_locals(authorization: str, database_url: str, redis_url: str) -> None:
    headers = {"authorization": authorization}
    raise RuntimeError(f"could not reach {database_url} (asked by {len(headers)} headers)")


@pytest.fixture(params=["json", "console"])
def output(request, tmp_path) -> Iterator[io.StringIO]:
    """What the configured handler writes (to stderr in production)."""
    configure_logging(Settings(log_format=request.param, data_dir=tmp_path), service="test")
    buffer = io.StringIO()
    logging.getLogger().handlers[0].setStream(buffer)
    yield buffer
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = []


def test_no_line_carries_a_secret(output):
    log = structlog.get_logger("test.redaction")
    log.info(
        "request",
        authorization=f"Bearer {API_KEY}",
        password=SECRET,
        session_cookie=SECRET,
        headers={"Authorization": f"Bearer {API_KEY}", "accept": "*/*"},
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
    )
    log.warning(f"a message naming {API_KEY} and {REDIS_URL}")
    logging.getLogger("uvicorn.error").warning("foreign logger: %s", DATABASE_URL)
    try:
        fails_with_secrets_in_its_locals(f"Bearer {API_KEY}", DATABASE_URL, REDIS_URL)
    except RuntimeError:
        log.exception("unhandled_error")
    written = output.getvalue()
    assert SECRET not in written
    assert "unhandled_error" in written and "fails_with_secrets_in_its_locals" in written  # the traceback is there
    assert "qrf_deadbeef_" in written and "db.internal" in written  # what is not secret stays, to tell keys apart
    assert "[redacted]" in written


def test_no_line_carries_a_dashboard_password_session_or_csrf_token(output):
    """The dashboard's secrets: a sign-in form's password, the session cookie, a form's CSRF token, as fields
    and inside texts (a Cookie header, a form body quoted by an error)."""
    log = structlog.get_logger("test.redaction")
    log.info("sign_in", email="ann@example.com", password=SECRET, csrf_token=SECRET, csrf=SECRET)
    log.info("headers", cookie=f"qrflow_session={SECRET}", headers={"Cookie": f"qrflow_session={SECRET}"})
    log.warning(f"request had Cookie: qrflow_session={SECRET}; theme=dark")
    log.warning(f"bad form body b'email=ann%40example.com&password={SECRET}&csrf_token={SECRET}'")
    log.warning(f"parsed {{'password': '{SECRET}', 'csrf_token': \"{SECRET}\"}}")
    written = output.getvalue()
    assert SECRET not in written
    assert "ann@example.com" in written and "theme=dark" in written  # what is not secret stays
