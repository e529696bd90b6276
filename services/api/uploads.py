"""CSV uploads (manual items, schedules): the body as text, and the refusal that
lists every problem."""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

from services.core.problems import Problems
from services.ingest.app import BodyTooLarge, read_body


async def csv_text(request: Request, limit: int) -> str:
    """The request's body as UTF-8 text: 413 past `limit` bytes, 422 naming the
    first byte that is not UTF-8."""
    try:
        body = await read_body(request, limit)
    except BodyTooLarge as exc:
        raise HTTPException(413, str(exc)) from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(422, f"the CSV is not UTF-8 (byte {exc.start})") from None


def refused(found: Problems) -> JSONResponse:
    """422: the upload is refused whole, every problem listed."""
    return JSONResponse({"detail": found.summary(), "problems": found.problems}, status_code=422)
