"""Bounds on how long a client may take to send a request, for every HTTP server
callkpi runs (API, ingest, worker health).

uvicorn closes an idle keep-alive connection, but not one that trickles its
request head a byte at a time, and nothing bounds reading a body: 300 such
connections were held open for ever (one file descriptor and buffer each), and a
slow body held a request, and its memory, as long as the client liked.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

Scope = dict[str, Any]
Message = dict[str, Any]


def guarded_h11(head_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose next request head is not
    complete within `head_timeout_s` of the connection or of the previous response."""

    class GuardedH11(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_head_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_head_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            deadline = getattr(self, "_head_deadline", None)
            if deadline is not None:
                deadline.cancel()
            super().connection_lost(exc)

        def _arm_head_deadline(self) -> None:
            waiting_after = self.cycle  # a new request head makes a new cycle
            old = getattr(self, "_head_deadline", None)
            if old is not None:
                old.cancel()

            def expire() -> None:
                if self.cycle is waiting_after and not self.transport.is_closing():
                    self.transport.close()

            self._head_deadline = self.loop.call_later(head_timeout_s, expire)

    return GuardedH11


class BodyTimeout(Exception):
    pass


class BodyDeadline:
    """ASGI middleware: a request body must arrive whole within `seconds` of the
    request head, or the answer is 408 (the connection is closed if a response had
    already begun). Waits after the body (an SSE stream watching for the client to
    leave) are not bounded."""

    def __init__(self, app: Any, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        body_done = False
        started = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                message: Message = await receive()
                return message
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout from None
            if message["type"] != "http.request" or not message.get("more_body"):
                body_done = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except BodyTimeout:
            if started:
                raise
            body = (
                b'{"detail":"request body not received within http_body_timeout_seconds='
                + f"{self.seconds:g}".encode()
                + b'"}'
            )
            await send({"type": "http.response.start", "status": 408,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"connection", b"close")]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
