"""The ceiling of `bench.reads`: a bare ASGI app answering a small JSON document,
served by the same uvicorn (its loop and HTTP parser) as `callkpi api`. What one
API process does on a window read is compared with what this does on the same
machine in the same run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

BODY = orjson.dumps({"entity": {"kind": "center", "id": "all"}, "offered": 1234, "answered": 1200})
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    import argparse

    import uvicorn

    from services.api.http_limits import guarded_h11

    ap = argparse.ArgumentParser(description="serve the bare JSON endpoint")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--guarded-h11", action="store_true",
                    help="callkpi's HTTP protocol (services/api/http_limits.py), "
                         "not uvicorn's default")  # fmt: skip
    args = ap.parse_args()
    http: Any = guarded_h11(10.0) if args.guarded_h11 else "auto"
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                http=http)  # fmt: skip


if __name__ == "__main__":
    main()
