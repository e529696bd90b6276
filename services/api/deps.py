"""FastAPI dependencies: settings, database connection, the caller's token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.api.read_cache import ReadCache
from services.core.auth import ANONYMOUS, Principal, Scope
from services.core.events import CONTROL_CHARACTERS
from services.core.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def get_conn(
    engine: Annotated[AsyncEngine, Depends(get_engine)],
) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        yield conn


async def get_read_cache(request: Request) -> ReadCache:
    cache: ReadCache = request.app.state.read_cache
    return cache


async def get_pipeline(request: Request) -> dict[str, Any] | None:
    """How far behind the figures are (services/api/pipeline.py); None without a
    broker to ask."""
    pipeline = getattr(request.app.state, "pipeline", None)
    if pipeline is None:
        return None
    summary: dict[str, Any] = pipeline.summary()
    return summary


# Postgres bigint: an id or version past it cannot name a row (and used to be a 500).
MAX_BIGINT = 2**63 - 1


async def no_control_characters(request: Request) -> None:
    """Every request: no path or query parameter holds a control character
    (Postgres text cannot hold U+0000, and no id has any). 422 naming it."""
    params = [*request.path_params.items(), *request.query_params.multi_items()]
    for name, value in params:
        for what, text in (("name", name), ("value", value)):
            found = CONTROL_CHARACTERS.search(str(text))
            if found:
                raise HTTPException(
                    422,
                    f"{name!r}: the parameter's {what} contains a control character "
                    f"(U+{ord(found.group()):04X} at position {found.start()})",
                )


SettingsDep = Annotated[Settings, Depends(get_settings)]
ConnDep = Annotated[AsyncConnection, Depends(get_conn)]
ReadCacheDep = Annotated[ReadCache, Depends(get_read_cache)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
PipelineDep = Annotated[dict[str, Any] | None, Depends(get_pipeline)]


def authorize(settings: Settings, authorization: str, scope: Scope) -> Principal:
    """The caller named by an Authorization header if its token has `scope` (or
    admin): 401 without a known token, 403 with one that lacks the scope. Auth off
    (no tokens): anonymous."""
    if not settings.auth.enabled:
        return ANONYMOUS
    kind, _, token = authorization.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="callkpi"'}
    if kind.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing token: send Authorization: Bearer <token>",
                            headers=challenge)  # fmt: skip
    principal = settings.auth.principal(token.strip())
    if principal is None:
        raise HTTPException(401, "unknown token", headers=challenge)
    if not principal.allows(scope):
        raise HTTPException(403, f"token {principal.name!r} lacks the {scope!r} scope")
    return principal


def require(scope: Scope) -> Any:
    """A dependency admitting callers whose token has `scope` (`authorize`). Runs
    before the endpoint, so a refused caller sees no data."""

    async def check(request: Request, settings: SettingsDep) -> Principal:
        return authorize(settings, request.headers.get("authorization", ""), scope)

    return Depends(check)
