"""Time and size limits on HTTP requests, below the ASGI app: uvicorn's httptools protocol with deadlines.

uvicorn keeps a connection that has sent nothing, or half a request line, open forever; it accepts a request line and
headers of any size (httptools sets no limit), and waits forever for a body that trickles in a byte at a time. Each
is a way to hold a server's connections and memory with almost no traffic (found by tests/adversarial/
test_slow_input.py, issue 12). `LimitedHttpToolsProtocol` adds, per connection:

- a header deadline: the request line and headers must arrive within ``header_timeout`` seconds of the connection
  opening or of the previous response (an idle keep-alive connection is closed by uvicorn's own keep-alive timeout,
  5 s); otherwise ``408`` and the connection is closed;
- a header size limit: more than ``max_header_bytes`` of request line and headers is a ``431``;
- a body deadline: once the headers are in, the whole body must arrive within ``body_timeout`` seconds; otherwise
  ``408`` (the app sees the client disconnect) and the connection is closed.

Every refusal is the contract's JSON error (``{"error": "invalid_request", ...}``), like uvicorn's own 400 for a
request it cannot parse, which is answered in JSON here too. The limits come from `identity.settings.HttpLimits`
(`configure`); ``identity serve`` uses this protocol whenever httptools is installed (it is a dependency).
"""

from __future__ import annotations

import json
from asyncio import TimerHandle, Transport
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from identity.settings import HttpLimits

__all__ = ["LimitedHttpToolsProtocol", "configure"]

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _HeadersTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into a parse error, answered by `send_400_response`."""


def configure(limits: HttpLimits) -> None:
    """Apply ``limits`` to every connection this process serves from now on."""
    LimitedHttpToolsProtocol.limits = limits


def error_response(status: int, description: str) -> bytes:
    """A complete HTTP/1.1 response with the contract's JSON error body, closing the connection."""
    body = json.dumps({"error": "invalid_request", "error_description": description}).encode()
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"cache-control: no-store\r\nconnection: close\r\n\r\n" % (status, _REASONS[status], len(body))
    )
    return head + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and a header size limit."""

    limits: ClassVar[HttpLimits] = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: TimerHandle | None = None
        self._header_bytes = 0
        self._too_large = False

    # --- deadlines ------------------------------------------------------------------------------------------

    def _arm(self, seconds: float, description: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, description)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, description: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:
                self.transport.close()  # too late for an answer: just end it
                return
            cycle.disconnected = True  # the app's receive() now reports a disconnect; its answer is dropped
            cycle.message_event.set()
        self._refuse(408, description)

    def _refuse(self, status: int, description: str) -> None:
        self._disarm()
        self.transport.write(error_response(status, description))
        self.transport.close()

    # --- uvicorn's protocol, with the limits --------------------------------------------------------------------

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        """Start the header deadline as soon as the connection opens."""
        super().connection_made(transport)
        self._arm(self.limits.header_timeout, "The request headers took too long to arrive.")

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the deadline."""
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        """A new request: its headers must arrive in time (a pipelined one, or after keep-alive)."""
        super().on_message_begin()
        self._header_bytes = 0
        self._arm(self.limits.header_timeout, "The request headers took too long to arrive.")

    def on_url(self, url: bytes) -> None:
        """Count the request line."""
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count each header."""
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes:
            self._too_large = True
            raise _HeadersTooLarge

    def on_headers_complete(self) -> None:
        """Headers in: the body (if any) must follow in time."""
        self._disarm()
        super().on_headers_complete()
        if not self.parser.should_upgrade() and self.cycle is not None and self.cycle.more_body:
            self._arm(self.limits.body_timeout, "The request body took too long to arrive.")

    def on_message_complete(self) -> None:
        """Body in: no deadline until the next request begins."""
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """Uvicorn's answer to a request it cannot parse (or with headers too large), in the contract's JSON."""
        if self._too_large:
            self._refuse(431, "The request line and headers are too large.")
        else:
            self._refuse(400, msg)

    def shutdown(self) -> None:
        """Graceful shutdown: no deadline outlives the connection."""
        self._disarm()
        super().shutdown()
