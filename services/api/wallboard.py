"""The wallboard pages (`/wallboard`, `/wallboard/agents`): static files, no
build step. They hold no figures, so they are served without a token; the page
asks for one (kept in the browser's storage, never in a URL) and reads
`/v1/stream` with it."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).with_name("static")
# only these files; nothing under a user-given path is ever opened
ASSETS = {
    "wallboard.js": "text/javascript",
    "wallboard.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
# the page must not be framed by another site (clickjacking), and loads nothing
# from anywhere but here
HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["wallboard"], include_in_schema=False)


@router.get("/wallboard")
async def wallboard() -> FileResponse:
    """Tiles per team (or, with ?team=, the team and its queues)."""
    return FileResponse(STATIC / "wallboard.html", media_type="text/html", headers=HEADERS)


@router.get("/wallboard/agents")
async def agents() -> FileResponse:
    """The agent leaderboard (?team= for one team)."""
    return FileResponse(STATIC / "agents.html", media_type="text/html", headers=HEADERS)


@router.get("/wallboard/static/{name}")
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(404, f"{name!r}: no such wallboard file")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=HEADERS)
