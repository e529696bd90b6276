"""Live-window reads the read cache holds, answered before FastAPI's routing.

A cached `GET /v1/kpis/{kind}/{id}?window=` spent three fifths of its CPU in
FastAPI's routing and dependency resolution (py-spy, `bench.reads`), not in the
cache. This pure ASGI middleware answers such a request when the read cache holds
its answer under Postgres' current snapshot (read after the request arrived, so a
commit before it always shows: services/api/read_cache.py) and the caller's
token would be admitted to the route (`authorize`, the same code as the route's
dependency). Anything else goes on to FastAPI unchanged: a miss (which reads and
fills the cache), an explicit range, another route, a caller the route would
refuse (FastAPI answers the 401 or 403), a snapshot that cannot be read. Only
answers the route itself stored are served here, under the request exactly as
sent, so parameters it would refuse never reach a hit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.deps import authorize
from services.api.kpis import DEFAULT_WINDOW
from services.api.read_cache import ReadCache, window_key
from services.core.settings import Settings
from services.core.timewin import WindowError, window_bounds

PREFIX = "/v1/kpis/"


class CacheHits:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        http = scope["type"] == "http"
        if http and scope["method"] == "GET" and scope["path"].startswith(PREFIX):
            body = await self._hit(scope)
            if body is not None:
                headers = [(b"content-type", b"application/json"),
                           (b"content-length", str(len(body)).encode())]  # fmt: skip
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    async def _hit(self, scope: Scope) -> bytes | None:
        state = scope["app"].state
        cache: ReadCache | None = getattr(state, "read_cache", None)
        settings: Settings | None = getattr(state, "settings", None)
        if cache is None or settings is None or not cache.enabled:
            return None
        key = _key(settings, scope)
        if key is None or not cache.fresh(key):
            return None
        if settings.auth.enabled:
            try:
                authorize(settings, Headers(scope=scope).get("authorization", ""), "read")
            except HTTPException:
                return None
        try:
            snapshot = await cache.snapshot()
        except Exception:  # the route reads it again and answers as it does when Postgres is away
            return None
        return cache.get(key, snapshot)


def _key(settings: Settings, scope: Scope) -> Any:
    """The read cache's key for a live-window request, None for anything else."""
    query: bytes = scope["query_string"]
    try:
        params = dict(parse_qsl(query.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        return None
    if "from" in params or "to" in params:
        return None
    try:
        start, end = window_bounds(params.get("window", DEFAULT_WINDOW), datetime.now(UTC),
                                   settings.tz)  # fmt: skip
    except WindowError:
        return None
    return window_key(scope["path"], query, start, end)
