"""The HTTP server's own limits on a request's head (request line and headers), before the app sees it.

uvicorn's httptools protocol (the fast parser, kept for the redirect's sake) bounds neither the size of
a request's head nor the time a client takes to send it: 20 connections each sending 8 MB of header
lines held 150 MB, and sockets trickling a header line a second stayed open for good (uvicorn's
timeout_keep_alive only covers the idle time between requests, and is cancelled by the first byte;
its issue #157 lists a request-start timeout as not done). This protocol adds both:

- a head over MAX_HEAD_BYTES is answered 431 and the connection closed, holding at most that much
  (plus one read) per connection;
- a head not complete HEAD_TIMEOUT_SECONDS after the connection opened, or after the request's first
  byte arrived, is answered 408 and the connection closed (within 2 s more: a check per connection every
  2 s). The body and the response are not timed here; idle time between requests is uvicorn's
  timeout_keep_alive.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_SECONDS = 10.0
# How often a connection checks the time its head has taken: a head is refused 10 to 12 s after it began.
# A check per connection every 2 s rather than a timer per request, which cost 8% of a bare 302's CPU.
_CHECK_EVERY_SECONDS = 2.0


class BoundedHeadProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_bytes = 0
        super().connection_made(transport)
        self._head_since: float | None = self.loop.time()  # None once the head is complete
        self._head_check = self.loop.call_later(_CHECK_EVERY_SECONDS, self._check_head_time)

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_check.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_since is not None:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still without its blank line after this much: refused. (A read that completes the head counts
        # for nothing, however much body it also carries.)
        if self._head_since is not None and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            message = f"the request's headers are over {MAX_HEAD_BYTES} bytes"
            self._refuse(431, "Request Header Fields Too Large", message)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_since is None:
            self._head_since = self.loop.time()

    def on_headers_complete(self) -> None:
        self._head_since = None
        self._head_bytes = 0
        super().on_headers_complete()

    def _check_head_time(self) -> None:
        if self.transport.is_closing():
            return
        if self._head_since is not None and self.loop.time() - self._head_since > HEAD_TIMEOUT_SECONDS:
            self._refuse(408, "Request Timeout", f"the request's headers took over {HEAD_TIMEOUT_SECONDS:g} s")
            return
        self._head_check = self.loop.call_later(_CHECK_EVERY_SECONDS, self._check_head_time)

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self._head_check.cancel()
        body = message.encode()
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        self.transport.close()
