"""`GET /v1/reports/{kind}/{id}`: the report the reports page draws, as JSON, or
as the CSV or XLSX file of the same rows (docs/reports.md#reports)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from services.api.deps import ConnDep, PipelineDep, SettingsDep
from services.api.kpis import Kind, SlQ, require_entity, sl_block_of
from services.core.settings import Settings
from services.core.timewin import WindowError, explicit_bounds, interval_edges, iso
from services.readmodel import reports
from services.readmodel.figures import Figures, display_name

router = APIRouter(tags=["reports"])

# Intervals of an hour or less carry staffing (two queueing computations each):
# the same bound as /v1/staffing. Days, weeks and months reach a year and more.
MAX_FINE_SPAN = timedelta(days=31)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Excel number formats per column unit; times are written as the local wall clock
XLSX_FORMATS = {"rate": "0.0%", "seconds": "0", "agents": "0.0", "count": "0",
                "time": "yyyy-mm-dd hh:mm"}  # fmt: skip


@router.get("/v1/reports/{kind}/{entity_id:path}")
async def get_report(
    kind: Kind,
    entity_id: str,
    conn: ConnDep,
    settings: SettingsDep,
    pipeline: PipelineDep,
    from_: Annotated[
        str, Query(alias="from", description="RFC 3339, minute-aligned, or a local date")
    ],
    to: Annotated[str, Query(description="RFC 3339, minute-aligned, or a local date; exclusive")],
    granularity: Annotated[
        str, Query(description="15m, 30m, 1h, 1d, 1w (ISO weeks) or 1mo")
    ] = "30m",
    sl: SlQ = None,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Any:
    """Per interval: calls and their outcomes, answer rate and service level
    with the alert line in force over the interval (peak or off-peak) and how
    the figure stands against it, ASA, AHT, FCR, CSAT, occupancy, the agents
    required, scheduled and staffed (intervals up to 1h), and the same interval
    a week before (up to 1w). `format=csv|xlsx`: the same rows as a file."""
    try:
        start, end = explicit_bounds(from_, to, settings.tz)
        edges = interval_edges(start, end, granularity, settings.tz)
    except WindowError as exc:
        raise HTTPException(422, str(exc)) from None
    if granularity in reports.STAFFING_GRANULARITIES and end - start > MAX_FINE_SPAN:
        raise HTTPException(
            422, f"from/to: at most {MAX_FINE_SPAN.days} days at {granularity} (each interval "
            "carries its staffing); choose 1d, 1w or 1mo for longer ranges"
        )  # fmt: skip
    sl_block = sl_block_of(settings, sl)
    figures = Figures(conn, settings, datetime.now(UTC), grouped=False)
    await require_entity(figures, kind, entity_id)
    body = await reports.report(figures, kind.value, entity_id, edges, granularity, sl)
    head = {
        "kind": kind.value,
        "id": entity_id,
        "name": display_name(settings, kind.value, entity_id),
        "granularity": granularity,
        "from": iso(start, settings.tz),
        "to": iso(end, settings.tz),
        "time_zone": settings.timezone,
        "pipeline": pipeline,
        "definitions": settings.kpi.stamp(),
        **sl_block,
    }
    if format == "json":
        return head | body
    name = _filename(kind.value, entity_id, start, settings, granularity)
    if format == "csv":
        content, media = _csv(body).encode(), "text/csv; charset=utf-8"
    else:
        content, media = _xlsx(head, body), XLSX
    return Response(
        content, media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'},
    )  # fmt: skip


def _filename(kind: str, entity_id: str, start: datetime, settings: Settings, g: str) -> str:
    # ids may hold slashes and anything else (SIP/1001): only safe characters
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", entity_id)
    return f"callkpi-{kind}-{safe}-{start.astimezone(settings.tz):%Y-%m-%d}-{g}"


def _csv(body: dict[str, Any]) -> str:
    """Rates as fractions and seconds as numbers, as in the JSON: a BI tool or a
    spreadsheet formats them; an empty cell is a figure without data."""
    buf = io.StringIO()
    names = [c["name"] for c in body["columns"]]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    for row in body["rows"]:
        w.writerow(["" if row[n] is None else row[n] for n in names])
    return buf.getvalue()


def _xlsx(head: dict[str, Any], body: dict[str, Any]) -> bytes:
    """One sheet of the rows under their labels, formatted as the page shows
    them (rates as percentages), and one saying what the report is."""
    import xlsxwriter

    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True, "strings_to_numbers": False})
    sheet = book.add_worksheet("Report")
    bold = book.add_format({"bold": True})
    formats = {u: book.add_format({"num_format": f}) for u, f in XLSX_FORMATS.items()}
    columns = body["columns"]
    for j, c in enumerate(columns):
        sheet.write_string(0, j, c["label"], bold)
        sheet.set_column(j, j, max(10, len(c["label"]) + 2))
    for i, row in enumerate(body["rows"], start=1):
        for j, c in enumerate(columns):
            value = row[c["name"]]
            if value is None:
                continue
            if c["unit"] == "time":
                # Excel has no time zones: the center's wall clock, as on the page
                local = datetime.fromisoformat(value).replace(tzinfo=None)
                sheet.write_datetime(i, j, local, formats["time"])
            elif c["unit"] == "text":
                sheet.write_string(i, j, str(value))
            else:
                sheet.write_number(i, j, value, formats[c["unit"]])
    sheet.freeze_panes(1, 2)
    about = book.add_worksheet("About")
    facts = [
        ("Report", f"{head['kind']} {head['id']} ({head['name']})"),
        ("From", head["from"]), ("To", head["to"]), ("Granularity", head["granularity"]),
        ("Time zone", head["time_zone"]),
        ("Service level threshold (s)", str(head["sl_seconds"])),
        ("Definitions", head["definitions"]["hash"]),
    ]  # fmt: skip
    for f, line in body["lines"].items():
        if line is not None:
            text = (f"rule {line['rule']}: peak {line['peak']}, off-peak {line['off_peak']}, "
                    f"judged from {line['min_calls']} calls")  # fmt: skip
            facts.append((f"{f} line", text))
    for i, (k, v) in enumerate(facts):
        about.write_string(i, 0, k, bold)
        about.write_string(i, 1, v)
    about.set_column(0, 0, 28)
    about.set_column(1, 1, 60)
    book.close()
    return out.getvalue()
