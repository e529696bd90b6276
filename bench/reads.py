"""`make bench` (issue 25): window reads of one API process under a real load
generator (wrk, Debian's package), against the ceiling of a bare uvicorn JSON
endpoint on the same machine in the same run.

The stack holds the last hour of a 500-agent center (the pipeline bench's
roster), counted by a worker; then, with the worker idle:

  1. sustained requests/s: wrk with 32 connections for --seconds, on
     `GET /v1/kpis/center/all?window=1h` and on the bare endpoint (bench/bare_app.py,
     served by uvicorn's defaults and by callkpi's guarded h11 protocol); the ratio
     API ÷ bare (issue 25: ≥ 0.25);
  2. `/healthz` of the same process (its middleware and routing, no read: the
     ceiling of any route of it), and the window read with `read_cache_seconds`
     0 (another API process): what an answer costs when figures were committed
     since the previous one;
  3. latency at a steady rate: wrk's connections each wait between requests (a
     Lua `delay`) so that together they send about 10 and about 1,000 requests/s;
     p99 at 1,000 ÷ p50 at 10 (issue 25: ≤ 3). wrk measures from each request
     sent; the rate it reached is printed beside it.

Without wrk on the PATH (it is installed by `make bench` where apt can), the
bench says so and measures nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from bench.pipeline import group_lag, log, post_all, processed, simulate
from services.core.db import asyncpg_dsn
from services.devstack import Stack, free_port, wait_http
from services.simulator import DAILY_PROFILE

ROOT = Path(__file__).resolve().parents[1]
# the center: the bench starts without a configured roster (teams are unassigned)
PATH = "/v1/kpis/center/all?window=1h"

# Reports what wrk measured as one JSON line (latency in µs, from wrk's histogram).
REPORT_LUA = """
function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "errors": %d, "p50": %d, "p99": %d, "max": %d}\\n',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""
# The same, each connection waiting `pace` ms after each response (wrk's `delay`).
PACED_LUA = (
    """
local pace = 0
function init(args) pace = tonumber(args[1]) end
function delay() return pace end
"""
    + REPORT_LUA
)


@dataclass
class Run:
    rate: float  # requests/s reached
    p50_s: float
    p99_s: float
    errors: int


def wrk(url: str, connections: int, seconds: int, script: Path, *extra: str) -> Run:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script),
         url, "--", *extra],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    line = next(m for m in re.findall(r"^\{.*\}$", out, re.MULTILINE))
    r = json.loads(line)
    return Run(r["requests"] / r["seconds"], r["p50"] / 1e6, r["p99"] / 1e6, r["errors"])


def at_rate(url: str, rate: int, seconds: int, script: Path) -> Run:
    """About `rate` requests/s: each connection waits `pace` ms after a response
    (10 connections at 10/s wait 1 s; 40 at 1,000/s wait 40 ms less the
    response time). wrk has no constant-rate mode, so a connection's cycle is its
    pace plus the response's latency: up to three 2-second runs measure that
    latency and shorten the pace by it until the rate is within 5% (20
    connections at a plain 20 ms pace reached 714-730/s of the 1,000 asked; one
    correction from a cold first probe overshot to 1,318/s)."""
    connections = 10 if rate <= 100 else 40
    cycle_ms = connections * 1000 / rate
    pace_ms = cycle_ms
    for _ in range(3 if rate > 100 else 0):
        probe = wrk(url, connections, 2, script, str(max(1, round(pace_ms))))
        if abs(probe.rate / rate - 1) < 0.05:
            break
        latency_ms = max(0.0, connections * 1000 / probe.rate - max(1, round(pace_ms)))
        pace_ms = cycle_ms - latency_ms
    return wrk(url, connections, seconds, script, str(max(1, round(pace_ms))))


def serve_bare(stack: Stack, guarded: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [sys.executable, "-m", "bench.bare_app", "--port", str(port)]
    proc = subprocess.Popen([*args, *(["--guarded-h11"] if guarded else [])], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    wait_http(url, 30)
    return proc, url


async def wait_counted(db: str, bootstrap: str, events: int) -> None:
    """Until the worker has counted `events` and both stages are committed: the
    reads are then measured on an idle worker."""
    pool = await asyncpg.create_pool(asyncpg_dsn(db), min_size=1, max_size=1)
    try:
        deadline = time.monotonic() + 600
        while await processed(pool) < events or await group_lag(bootstrap):
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not count the history within 10 minutes")
            await asyncio.sleep(0.5)
    finally:
        await pool.close()


async def snapshot_changes(db: str, seconds: float) -> int:
    """How often anything committed (the snapshot changed) over `seconds`, polled
    every 10 ms: each change makes the read cache read afresh."""
    conn = await asyncpg.connect(asyncpg_dsn(db))
    try:
        seen, changes = None, 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            snap = await conn.fetchval("SELECT pg_current_snapshot()::text")
            changes += seen is not None and snap != seen
            seen = snap
            await asyncio.sleep(0.01)
        return changes
    finally:
        await conn.close()


def main(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        log("window reads: not measured (wrk is not installed: `apt-get install wrk`, "
            "which `make bench` does as root)")  # fmt: skip
        return
    tmp = Path(tempfile.mkdtemp(prefix="callkpi-reads-"))
    script, paced = tmp / "report.lua", tmp / "paced.lua"
    script.write_text(REPORT_LUA)
    paced.write_text(PACED_LUA)
    stack = Stack(tmp, cwd=ROOT)
    bare: list[subprocess.Popen[bytes]] = []
    try:
        bootstrap = stack.embedded_broker()
        db = stack.embedded_postgres(tmp / "pg")
        stack.migrate()
        stack.env.update({"CALLKPI_HASH_KEY": "bench", "CALLKPI_PARTITIONS": "8"})
        port = free_port()
        api = stack.spawn("api", "api", "--with-ingest", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        stack.wait_ready(f"{base}/readyz", 60, api)
        # The hour before now, at any hour of the run: the simulator's volume is
        # scaled up by its daily profile for the quietest of these hours, as the
        # freshness run does, so the one-hour window always holds calls (at
        # 6,000 calls/h unscaled, a night run's hour held few).
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
        quietest = min(DAILY_PROFILE[(start.hour + h) % 24] for h in range(2))
        lines = simulate(args.events, 5, start, calls_per_hour=6000 / quietest)
        lines = [ln for ln in lines if _before(ln, datetime.now(UTC))]
        log(f"the last hour of a 500-agent center: {len(lines):,} events …")
        asyncio.run(post_all(base, lines, 5000))
        stack.spawn("worker", "worker", "--port", str(free_port()))
        asyncio.run(wait_counted(db, bootstrap, len(lines)))

        changes = asyncio.run(snapshot_changes(db, 2.0))
        log(f"  Postgres' snapshot (what the read cache is keyed on) changed {changes} times "
            "in 2 s of the idle stack")  # fmt: skip
        s = args.seconds
        runs: dict[str, Run] = {}
        for guarded in (False, True):
            proc, url = serve_bare(stack, guarded)
            bare.append(proc)
            name = "bare (callkpi's h11)" if guarded else "bare (uvicorn defaults)"
            wrk(url, 32, 3, script)  # warm-up
            runs[name] = wrk(url, 32, s, script)
            proc.terminate()
            proc.wait(10)
        api_url = base + PATH
        probe = httpx.get(api_url, timeout=10)
        if probe.status_code != 200 or not probe.json().get("offered"):
            raise SystemExit(f"GET {PATH} answered {probe.status_code}: {probe.text[:300]}")
        # the API's own floor: its middleware and routing on a route that reads nothing
        runs["api /healthz"] = wrk(base + "/healthz", 32, s, script)
        wrk(api_url, 32, 3, script)
        runs["api"] = wrk(api_url, 32, s, script)
        runs["api @10/s"] = at_rate(api_url, 10, s, paced)
        runs["api @1000/s"] = at_rate(api_url, 1000, s, paced)
        # the same read with the cache off: what each answer costs when figures
        # were committed since the last one (a read per commit, at most)
        uport = free_port()
        uncached = stack.spawn("api-uncached", "api", "--port", str(uport),
                               env={"CALLKPI_READ_CACHE_SECONDS": "0"})  # fmt: skip
        stack.wait_ready(f"http://127.0.0.1:{uport}/readyz", 60, uncached)
        miss_url = f"http://127.0.0.1:{uport}{PATH}"
        wrk(miss_url, 32, 3, script)
        runs["api, cache off"] = wrk(miss_url, 32, s, script)
        uncached.stop()
        if any(run.errors for run in runs.values()):
            raise SystemExit(f"wrk saw errors (non-2xx or sockets): {runs}")
        for name, r in runs.items():
            log(f"  {name:<26} {r.rate:>8,.0f} requests/s, p50 {r.p50_s * 1000:7.2f} ms, "
                f"p99 {r.p99_s * 1000:7.2f} ms, errors {r.errors}")  # fmt: skip
        ceiling = runs["bare (uvicorn defaults)"]
        h11 = runs["bare (callkpi's h11)"]
        api_run, slow, busy = runs["api"], runs["api @10/s"], runs["api @1000/s"]
        log("")
        log(f"summary (one run, this machine, {os.cpu_count()} cores; logs in {tmp})")
        log(f"  window read, one API process {api_run.rate:>8,.0f} requests/s = "
            f"{api_run.rate / ceiling.rate:.2f} × bare uvicorn's {ceiling.rate:,.0f} "
            f"(issue 25: ≥ 0.25); {api_run.rate / h11.rate:.2f} × bare on callkpi's h11 "
            f"{h11.rate:,.0f}")  # fmt: skip
        log(f"  p99 at {busy.rate:,.0f}/s {busy.p99_s * 1000:.2f} ms ÷ p50 at "
            f"{slow.rate:,.1f}/s {slow.p50_s * 1000:.2f} ms = {busy.p99_s / slow.p50_s:.2f} "
            "(issue 25: ≤ 3)")  # fmt: skip
        miss, floor = runs["api, cache off"], runs["api /healthz"]
        log(f"  /healthz, same process       {floor.rate:>8,.0f} requests/s = "
            f"{floor.rate / ceiling.rate:.3f} × bare uvicorn (FastAPI, the middleware, "
            "no read: the window read's ceiling in this process)")  # fmt: skip
        log(f"  the same read, cache off     {miss.rate:>8,.0f} requests/s = "
            f"{miss.rate / ceiling.rate:.3f} × bare uvicorn (each answer read afresh)")  # fmt: skip
    finally:
        for proc in bare:
            if proc.poll() is None:
                proc.kill()
        stack.stop(destroy=True)


def _before(line: bytes, now: datetime) -> bool:
    """Simulated events up to now only (ingest refuses the future)."""
    m = re.search(rb'"occurred_at":"([^"]+)"', line)
    return m is None or datetime.fromisoformat(m.group(1).decode()) <= now


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=10)
    main(ap.parse_args())
