"""One HTTP attempt: signed, bounded in time and size, to an address that was checked."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from app.webhooks.addresses import check_url, resolve

CONNECT_TIMEOUT = 5.0
TOTAL_TIMEOUT = 15.0
READ_AT_MOST = 64 * 1024
KEEP_OF_RESPONSE = 4 * 1024


@dataclass(frozen=True)
class Response:
    status_code: int | None
    body: str | None  # the first 4 KiB, as text
    error: str | None
    duration_ms: int


def new_client() -> httpx.Client:
    """One per worker process, shared by its threads (httpx.Client is thread-safe); never follows redirects."""
    return httpx.Client(
        timeout=httpx.Timeout(TOTAL_TIMEOUT, connect=CONNECT_TIMEOUT),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        trust_env=False,  # no proxy from the environment: the checked address is the one connected to
    )


@dataclass(frozen=True)
class Target:
    """Where an endpoint's requests go: its URL with the host replaced by an address that was checked."""

    url: httpx.URL
    host_header: str
    extensions: dict

    @classmethod
    def of(cls, url: str, *, production: bool, allow_private: bool) -> Target:
        """Checked and resolved now (Refused, with the reason, if the URL or an address is not allowed)."""
        scheme, host, port = check_url(url, production=production)
        address = resolve(host, port, allow_private=allow_private)[0]
        default_port = port == (443 if scheme == "https" else 80)
        return cls(
            url=httpx.URL(url).copy_with(host=address.split("%", 1)[0]),
            host_header=host if default_port else f"{host}:{port}",
            # TLS still checks the certificate against the name, not the address.
            extensions={"sni_hostname": host} if scheme == "https" else {},
        )


def refused(error: str) -> Response:
    return Response(None, None, error, 0)


def post(client: httpx.Client, target: Target, body: bytes, headers: dict[str, str]) -> Response:
    started = time.monotonic()

    def answer(status_code: int | None = None, text: str | None = None, error: str | None = None) -> Response:
        return Response(status_code, text, error, int((time.monotonic() - started) * 1000))

    headers = {**headers, "Host": target.host_header}
    try:
        request = client.build_request("POST", target.url, content=body, headers=headers, extensions=target.extensions)
        response = client.send(request, stream=True)
        try:
            received = bytearray()
            for chunk in response.iter_raw():
                received += chunk
                if len(received) >= READ_AT_MOST or time.monotonic() - started > TOTAL_TIMEOUT:
                    break
        finally:
            response.close()
    except httpx.HTTPError as exc:
        return answer(error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    if time.monotonic() - started > TOTAL_TIMEOUT:
        return answer(response.status_code, _text(received), "timed out reading the response (15 s)")
    return answer(response.status_code, _text(received))


def _text(received: bytes) -> str:
    return bytes(received[:KEEP_OF_RESPONSE]).decode("utf-8", "replace")
