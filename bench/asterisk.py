"""`make bench-asterisk`: `callkpi asterisk import` of a month of a 100-agent center.

Generates the month's queue_log (deterministic: ENTERQUEUE, rings not answered,
CONNECT, COMPLETE*, abandons, timeouts, transfers, pauses, logins), then, in one
run so the machine's noise affects all of them alike:
  1. the adapter alone: read, parse, map and serialise, no HTTP (its ceiling);
  2. ingest alone: the same events, already mapped, posted in the same batches
     (the ceiling of the receiving side);
  3. the import: file → ingest, as `callkpi asterisk import` does it, with no
     worker counting meanwhile: a history import is a batch job, and on this
     machine's two cores a worker would take one of the two the import and
     ingest run on (in production it runs on its own);
  4. counted: a worker is started on the imported topics; from the import's
     start until it has counted every call and every answered call is an FCR
     candidate or unidentified (withheld): lines → figures visible.

--withheld F (0.5): the share of calls whose caller id is withheld, written as a
real PBX does ("0", "anonymous", "", "Restricted", ...): a real bank's month had
more than half. Options: --days N, --agents N.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import os
import random
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import orjson

from bench.pipeline import ROOT, log, post_all
from services.asterisk.importer import BATCH_LINES, import_files
from services.asterisk.queue_log import Mapper, read_lines
from services.devstack import Stack, free_port

TZ = ZoneInfo("Asia/Shanghai")
START = 1790784000  # 2026-10-01 00:00 +08:00


WITHHELD = ["0", "0", "anonymous", "", "Restricted", "PRIVATE", "<unknown>", "Unavailable"]


def generate(
    path: Path, days: int, agents: int, withheld: float, seed: int = 11
) -> tuple[int, int]:
    """A center open 08:00–20:00 with `agents` agents in 3 queues; about 9 calls
    per agent-hour offered, 90 % answered. Returns (lines, calls)."""
    rnd = random.Random(seed)
    queues = ["billing", "tech", "sales"]
    members = [f"PJSIP/{1000 + a}" for a in range(agents)]
    lines: list[tuple[float, str]] = []
    n = 0
    for d in range(days):
        open_at, close_at = START + d * 86400 + 8 * 3600, START + d * 86400 + 20 * 3600
        for m in members:
            q = queues[int(m[-2:]) % 3]
            lines.append((open_at - rnd.randint(0, 600), f"NONE|{q}|{m}|ADDMEMBER|"))
            lunch = open_at + 4 * 3600 + rnd.randint(0, 3600)
            lines.append((lunch, f"NONE|{q}|{m}|PAUSE|lunch"))
            lines.append((lunch + 1800, f"NONE|{q}|{m}|UNPAUSE|"))
            lines.append((close_at + rnd.randint(0, 600), f"NONE|{q}|{m}|REMOVEMEMBER|"))
        t = float(open_at)
        rate = agents * 9 / 3600
        while True:
            t += rnd.expovariate(rate)
            if t >= close_at:
                break
            n += 1
            cid, q = f"{int(t)}.{n}", rnd.choice(queues)
            if rnd.random() < withheld:
                caller = rnd.choice(WITHHELD)
            else:
                caller = f"1380000{rnd.randint(0, 99999):05d}"
            lines.append((t, f"{cid}|{q}||ENTERQUEUE||{caller}|1"))
            wait = rnd.randint(0, 60)
            r = rnd.random()
            if r < 0.07:
                lines.append((t + wait, f"{cid}|{q}|NONE|ABANDON|1|1|{wait}"))
                continue
            if r < 0.09:
                lines.append((t + 300, f"{cid}|{q}|NONE|EXITWITHTIMEOUT|1|1|300"))
                continue
            agent = rnd.choice(members)
            if rnd.random() < 0.1:
                other = rnd.choice(members)
                lines.append((t + wait - 1, f"{cid}|{q}|{other}|RINGNOANSWER|15000"))
            lines.append((t + wait, f"{cid}|{q}|{agent}|CONNECT|{wait}|{cid}1|{rnd.randint(1, 6)}"))
            talk = rnd.randint(30, 600)
            end = rnd.choice(["COMPLETECALLER", "COMPLETEAGENT", "COMPLETEAGENT", "TRANSFER"])
            if end == "TRANSFER":
                data = f"2000|from-internal|{wait}|{talk}|1"
            else:
                data = f"{wait}|{talk}|1"
            lines.append((t + wait + talk, f"{cid}|{q}|{agent}|{end}|{data}"))
    lines.sort(key=lambda x: x[0])
    with path.open("w") as fh:
        for at, rest in lines:
            fh.write(f"{int(at)}|{rest}\n")
    return len(lines), n


async def counted_all(db: str, calls: int, give_up_s: float) -> dict[str, int]:
    """Wait until the center has every call and every answered call is decided
    for FCR (a candidate, or unidentified): the whole month is counted."""
    import asyncpg

    from services.core.db import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(db))
    deadline = time.monotonic() + give_up_s
    try:
        while True:
            row = await conn.fetchrow(
                "SELECT coalesce(sum(offered), 0) AS offered,"
                " coalesce(sum(answered), 0) AS answered,"
                " coalesce(sum(fcr_unidentified), 0) AS fcr_unidentified,"
                " (SELECT coalesce(sum(fcr_candidates), 0) FROM kpi_fcr_buckets"
                "  WHERE kind = 'center') AS fcr_candidates "
                "FROM kpi_buckets WHERE kind = 'center'"
            )
            got = {k: int(v) for k, v in row.items()}
            if got["offered"] == calls and got["answered"] == (
                got["fcr_candidates"] + got["fcr_unidentified"]
            ):
                return got
            if time.monotonic() > deadline:
                raise SystemExit(f"not counted after {give_up_s:.0f} s: {got} of {calls} calls")
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


def map_only(path: Path, keep: bool) -> tuple[int, list[bytes], float]:
    """(lines, events as JSON if `keep`, seconds) of reading, parsing, mapping
    and serialising the file, no HTTP. Timed without keeping: holding two million
    encoded events slowed the pass by a third, and the import holds none."""
    started = time.perf_counter()
    mapper = Mapper()
    events: list[bytes] = []
    with path.open() as fh:
        for i, item in enumerate(read_lines(fh, TZ), start=1):
            encoded = [orjson.dumps(e) for e in mapper.feed(item)]
            if keep:
                events += encoded
            if i % BATCH_LINES == 0:
                mapper.forget_finished()
    return mapper.stats.lines, events, time.perf_counter() - started


async def run_import(url: str, path: Path) -> tuple[float, int]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        out = await import_files([path], client, Mapper(), TZ, 60, progress=io.StringIO())
    assert out.rejected == 0, out.summary()
    return out.seconds, out.accepted


def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="callkpi-bench-asterisk-"))
    path = tmp / "queue_log"
    log(f"generating {args.days} days of a {args.agents}-agent center …")
    n, calls = generate(path, args.days, args.agents, args.withheld)
    log(f"  {n:,} lines, {calls:,} calls ({args.withheld:.0%} withheld), "
        f"{path.stat().st_size / 1e6:.1f} MB")  # fmt: skip
    gc.collect()  # the generator's million tuples, before anything is timed
    # the adapter first, before the stack starts: Postgres and the broker settling
    # after their start took half of its speed in one run
    lines, _, map_s = map_only(path, keep=False)
    mapped = map_only(path, keep=True)[1]  # the events ingest alone is sent
    events = len(mapped)
    log(f"  adapter alone: {lines:,} lines → {events:,} events in {map_s:.1f} s = "
        f"{lines / map_s:,.0f} lines/s")  # fmt: skip
    stack = Stack(tmp, cwd=ROOT)
    try:
        stack.embedded_broker()
        db = stack.embedded_postgres(tmp / "pg")
        stack.migrate()
        port = free_port()
        stack.env.update({"CALLKPI_HASH_KEY": "bench", "CALLKPI_PARTITIONS": "8"})
        # ingest only: what is measured is the import into it
        ingest = stack.spawn("ingest", "ingest", "--port", str(port))
        url = f"http://127.0.0.1:{port}"
        stack.wait_ready(f"{url}/readyz", 60, ingest)

        # batches of the events of BATCH_LINES lines, three in flight, as the import
        per_batch = round(BATCH_LINES * events / lines)
        post_s = asyncio.run(post_all(url, mapped, per_batch, concurrency=3))
        log(f"  ingest alone: {events:,} events in {post_s:.1f} s = {events / post_s:,.0f} "
            f"events/s = {lines / post_s:,.0f} lines/s of this file")  # fmt: skip
        # The import gets an ingest and topics of its own, and then a worker, so
        # the counted figure is of its events alone (the ceiling's are not read).
        imp_env = {"CALLKPI_TOPIC_PREFIX": "import"}
        imp_port = free_port()
        importing = stack.spawn("ingest2", "ingest", "--port", str(imp_port), env=imp_env)
        imp_url = f"http://127.0.0.1:{imp_port}"
        stack.wait_ready(f"{imp_url}/readyz", 60, importing)
        started = time.perf_counter()
        imp_s, accepted = asyncio.run(run_import(imp_url, path))
        log(f"  import: {lines:,} lines ({accepted:,} events accepted) in {imp_s:.1f} s")
        stack.spawn("worker", "worker", "--port", str(free_port()), env=imp_env)
        counted = asyncio.run(counted_all(db, calls, give_up_s=1800))
        counted_s = time.perf_counter() - started
        log(f"  counted: {counted['offered']:,} calls, {counted['answered']:,} answered = "
            f"{counted['fcr_candidates']:,} FCR candidates + {counted['fcr_unidentified']:,} "
            f"unidentified, {counted_s:.1f} s after the import began")  # fmt: skip
        log("")
        log(f"summary (one run, this machine, {os.cpu_count()} cores; files in {tmp})")
        log(f"  adapter alone (no HTTP)        {lines / map_s:>10,.0f} lines/s")
        log(f"  ingest alone (pre-mapped)      {lines / post_s:>10,.0f} lines/s "
            f"({events / post_s:,.0f} events/s, {events / lines:.2f} events per line)")  # fmt: skip
        log(f"  callkpi asterisk import        {lines / imp_s:>10,.0f} lines/s "
            f"= {post_s / imp_s:.0%} of the ingest ceiling (target 50,000 lines/s)")  # fmt: skip
        log(f"  import to counted figures      {lines / counted_s:>10,.0f} lines/s "
            f"= {map_s / counted_s:.0%} of the adapter ceiling "
            f"(the worker's catch-up after the import: {counted_s - imp_s:.1f} s, "
            f"{accepted / max(counted_s - imp_s, 1e-9):,.0f} events/s)")  # fmt: skip
    finally:
        stack.stop(destroy=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--withheld", type=float, default=0.5)
    main(ap.parse_args())
