"""The browser pages: the wallboard (`/wallboard`, `/wallboard/agents`), the
reports (`/reports`) and the calls behind a figure (`/reports/calls`). Static
files, no build step. They hold no figures, so they are served without a token;
each page asks for one (kept in the browser's storage, never in a URL) and reads
the API with it."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).with_name("static")
# only these files; nothing under a user-given path is ever opened
ASSETS = {
    "wallboard.js": "text/javascript",
    "wallboard.css": "text/css",
    "common.js": "text/javascript",
    "reports.js": "text/javascript",
    "calls.js": "text/javascript",
    "reports.css": "text/css",
    "favicon.svg": "image/svg+xml",
    # uPlot, vendored with its licence (static/vendor/README.md)
    "vendor/uPlot.iife.min.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
    "vendor/uPlot.LICENSE": "text/plain; charset=utf-8",
}
# the page must not be framed by another site (clickjacking), and loads nothing
# from anywhere but here; downloads are blob: URLs the page makes itself
HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["pages"], include_in_schema=False)


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type="text/html", headers=HEADERS)


@router.get("/wallboard")
async def wallboard() -> FileResponse:
    """Tiles per team (or, with ?team=, the team and its queues)."""
    return _page("wallboard.html")


@router.get("/wallboard/agents")
async def agents() -> FileResponse:
    """The agent leaderboard (?team= for one team)."""
    return _page("agents.html")


@router.get("/reports")
async def reports() -> FileResponse:
    """Intervals of one entity over a day or a range: charts, table, downloads."""
    return _page("reports.html")


@router.get("/reports/calls")
async def calls() -> FileResponse:
    """The calls behind a figure (the parameters of GET /v1/calls)."""
    return _page("calls.html")


@router.get("/static/{name:path}")
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(404, f"{name!r}: no such page file")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=HEADERS)
