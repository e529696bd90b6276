"""`callkpi export`: intervals, calls, agent states, alerts and payroll rows of a
range to Parquet or CSV files, streaming (memory bounded by a batch, whatever the
range), with progress on stderr (docs/exports.md)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.cli.common import add_config, aware, settings_of
from services.core.settings import ConfigError

if TYPE_CHECKING:
    from services.cli.common import Subparsers


def cmd_export(args: argparse.Namespace) -> int:
    return asyncio.run(_export(args))


async def _export(args: argparse.Namespace) -> int:
    from services.core.db import make_engine
    from services.readmodel import exports

    settings = settings_of(args)
    start, end = aware(args.from_, "--from"), aware(args.to, "--to")
    if end <= start:
        raise ConfigError(f"--to {args.to} is not after --from {args.from_}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any I/O that matters
    kinds = args.kind or list(exports.KINDS)
    engine = make_engine(settings)
    try:
        async with engine.connect() as conn:
            for kind in kinds:
                batches: AsyncIterator[list[dict[str, Any]]]
                if kind == "intervals":
                    batches = exports.intervals(conn, settings, start, end, args.granularity)
                elif kind == "calls":
                    batches = exports.calls(conn, settings, start, end)
                elif kind == "agent-states":
                    batches = exports.agent_states(conn, start, end)
                elif kind == "alerts":
                    batches = exports.alerts(conn, start, end)
                else:
                    batches = exports.payroll(conn, start, end)
                path = out / f"{kind}.{args.format}"
                n = await _write(batches, path, args.format, kind)
                print(f"\r{kind}: {n:,} rows → {path}" + " " * 20, file=sys.stderr, flush=True)
    finally:
        await engine.dispose()
    return 0


async def _write(batches: AsyncIterator[list[dict[str, Any]]], path: Path, fmt: str,
                 kind: str) -> int:  # fmt: skip
    """Rows to `path` as they come, in the kind's columns (readmodel.exports)."""
    from services.readmodel.exports import columns

    started, n = time.monotonic(), 0
    writer: Any = None
    fh: Any = None
    cols: list[tuple[str, str]] = []
    try:
        async for batch in batches:
            if not batch:
                continue
            if writer is None:
                cols = columns(kind, batch)
                if fmt == "parquet":
                    import pyarrow.parquet as pq

                    writer = pq.ParquetWriter(path, _schema(cols))
                else:
                    fh = path.open("w", newline="", encoding="utf-8")
                    writer = csv.writer(fh)
                    writer.writerow([c for c, _ in cols])
            if fmt == "parquet":
                import pyarrow as pa

                names = writer.schema.names
                writer.write_table(
                    pa.Table.from_pylist(
                        [{k: r.get(k) for k in names} for r in batch], schema=writer.schema
                    )
                )
            else:
                writer.writerows([_cell(r.get(c)) for c, _ in cols] for r in batch)
            n += len(batch)
            print(f"\r{kind}: {n:,} rows, {n / max(time.monotonic() - started, 1e-9):,.0f}/s",
                  end="", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        if fmt == "parquet" and writer is not None:
            writer.close()
        if fh is not None:
            fh.close()
    if writer is None:  # nothing in the range: a file with the columns and no row
        from services.readmodel.exports import COLUMNS

        cols = COLUMNS.get(kind, [])
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(_schema(cols).empty_table(), path)
        else:
            path.write_text(",".join(c for c, _ in cols) + "\n", encoding="utf-8")  # noqa: ASYNC240
    return n


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, datetime) else value


def _schema(cols: list[tuple[str, str]]) -> Any:
    import pyarrow as pa

    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(),
             "bool": pa.bool_(), "time": pa.timestamp("us", tz="UTC")}  # fmt: skip
    return pa.schema([pa.field(name, types[t]) for name, t in cols])


def register(sub: Subparsers) -> None:
    from services.readmodel.exports import KINDS

    ex = sub.add_parser("export", help="intervals, calls, agent states, alerts, payroll rows "
                        "to Parquet or CSV (docs/exports.md)")  # fmt: skip
    add_config(ex)
    ex.add_argument("--from", dest="from_", required=True, help="RFC 3339 with offset")
    ex.add_argument("--to", required=True, help="RFC 3339 with offset, exclusive")
    ex.add_argument("--kind", action="append", choices=list(KINDS),
                    help="repeat for several (default: all)")  # fmt: skip
    ex.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    ex.add_argument(
        "--granularity", default="1h", help="intervals: 15m, 30m, 1h, 1d, 1w (ISO weeks) or 1mo"
    )
    ex.add_argument("--out", default="export", help="directory (one file per kind)")
    ex.set_defaults(func=cmd_export)
