"""`callkpi export` round trip: the Parquet and CSV files read back equal what the
API shows for the same range (figures per interval, calls)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest

from tests.support.databases import EXAMPLE_CONFIG, ROOT
from tests.support.dips import calls
from tests.support.stack import Stack, post_and_wait

pytestmark = pytest.mark.slow
SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = (datetime.now(SHANGHAI) - timedelta(days=3)).replace(
    hour=14, minute=0, second=0, microsecond=0
)
T1 = T0 + timedelta(hours=1)


def export(stack: Stack, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLKPI_DATABASE_URL": stack.env["CALLKPI_DATABASE_URL"]}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "--config", str(EXAMPLE_CONFIG), "export",
         "--from", T0.isoformat(), "--to", T1.isoformat(), "--out", str(out), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def posted(stack: Stack) -> dict[str, Any]:
    events = calls("ex", "q-export", T0 + timedelta(minutes=5), answered=9, abandoned=3,
                   spread=timedelta(minutes=40))  # fmt: skip
    return post_and_wait(stack, events, "q-export", (T0, T1), offered=12)


def test_parquet_intervals_and_calls_read_back_equal_the_api(
    stack: Stack, posted: dict[str, Any], tmp_path: Path
) -> None:
    run = export(stack, tmp_path, "--kind", "intervals", "--kind", "calls",
                 "--granularity", "15m")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "intervals:" in run.stderr and "calls:" in run.stderr  # progress, then the files
    rows = [r for r in pq.read_table(tmp_path / "intervals.parquet").to_pylist()
            if r["kind"] == "queue" and r["entity_id"] == "q-export"]  # fmt: skip
    api = stack.get("/v1/kpis/queue/q-export/intervals", **{"from": T0.isoformat(),
                    "to": T1.isoformat(), "granularity": "15m"}).json()["intervals"]  # fmt: skip
    assert len(rows) == len(api) == 4
    for mine, theirs in zip(rows, api, strict=True):
        assert mine["from"] == datetime.fromisoformat(theirs["from"])
        for name, value in mine.items():
            if name in theirs and name not in ("from", "to"):
                assert value == theirs[name], name
    exported = pq.read_table(tmp_path / "calls.parquet").to_pylist()
    listed = stack.get("/v1/calls", **{"from": T0.isoformat(), "to": T1.isoformat(),
                       "queue": "q-export"}).json()["items"]  # fmt: skip
    mine_calls = {r["call_id"]: r for r in exported if r["queue_id"] == "q-export"}
    assert set(mine_calls) == {c["call_id"] for c in listed}
    for c in listed:
        assert mine_calls[c["call_id"]]["outcome"] == c["outcome"]
        assert mine_calls[c["call_id"]]["wait_seconds"] == c["wait_seconds"]


def test_csv_has_a_header_and_every_call_and_an_empty_range_still_gives_readable_files(
    stack: Stack, posted: dict[str, Any], tmp_path: Path
) -> None:
    run = export(stack, tmp_path, "--kind", "calls", "--kind", "alerts", "--format", "csv")
    assert run.returncode == 0, run.stderr
    with (tmp_path / "calls.csv").open() as fh:
        table = [r for r in csv.DictReader(fh) if r["queue_id"] == "q-export"]
    assert len(table) == 12 and sum(r["outcome"] == "abandoned" for r in table) == 3
    assert (tmp_path / "alerts.csv").read_text().startswith("id,rule,kind")
    bad = export(stack, tmp_path, "--kind", "calls", "--to", T0.isoformat())
    assert bad.returncode == 2 and "is not after" in bad.stderr
