"""`make bench`: simulator → ingest → broker → worker → Postgres, on this machine.

Prints, in one run so the machine's noise affects all of them alike:
  1. ingest throughput (HTTP POST of NDJSON batches, events/s);
  2. the raw ceiling: an aiokafka `getmany` loop reading the same topic
     (records/s and events/s, envelopes decoded);
  3. worker throughput: events/s through one worker process catching up on the
     whole backlog (first to last commit), and its ratio to the ceiling; with
     `--processes 1,N`, then N processes on the same backlog (posted again under
     a topic prefix and a database of their own), and their ratio to one;
  4. freshness: events posted at a steady rate (default 5,000/s); for each batch,
     the time from its POST returning to the read API showing it; p50/p99.

Options: --events N (backlog size), --rate R (freshness rate), --seconds S.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import orjson

from services.core.db import asyncpg_dsn
from services.core.settings import Team
from services.devstack import Stack, free_port
from services.simulator import DAILY_PROFILE, SimConfig, Simulation

# 20 teams of 25 agents: enough capacity for 6,000 calls/h, so the event mix is a
# served center's (answers, holds, wrap-ups, surveys), not a collapsing one's.
ROSTER = [
    Team(id=f"team{t}", queues=[f"q{t}"], agents=[f"a{t}-{i}" for i in range(25)])
    for t in range(20)
]

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, flush=True)


def simulate(n_events: int, seed: int, start: datetime, calls_per_hour: float) -> list[bytes]:
    """The first `n_events` of a simulated month, then every agent logs out at the
    last event's time, as at the end of a working day: otherwise each agent's last
    state would stay open until the next run's first event, and the freshness run
    (20 days later) would begin by writing 500 agents × 12 h (max_state_hours) of
    minute buckets at once, which measures that burst, not freshness."""
    cfg = SimConfig(seed=seed, start=start, duration=timedelta(days=30), timezone="UTC",
                    calls_per_hour=calls_per_hour)  # fmt: skip
    out = []
    last: dict[str, object] = {}
    for ev in Simulation(cfg, ROSTER).events():
        out.append(orjson.dumps(ev))
        last = ev
        if len(out) >= n_events:
            break
    for team in ROSTER:
        for agent in team.agents:
            out.append(orjson.dumps({"event_id": f"bench-{seed}-logout-{agent}",
                                     "occurred_at": last["occurred_at"], "type": "agent.state",
                                     "agent_id": agent, "state": "logged_out"}))  # fmt: skip
    return out


async def post_all(url: str, lines: list[bytes], batch: int, concurrency: int = 4) -> float:
    started = time.perf_counter()
    chunks = [lines[i : i + batch] for i in range(0, len(lines), batch)]
    queue: asyncio.Queue[list[bytes]] = asyncio.Queue()
    for c in chunks:
        queue.put_nowait(c)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                chunk = queue.get_nowait()
                # a JSON array, as services/ingest/client.py posts
                r = await client.post("/v1/events", content=b"[" + b",".join(chunk) + b"]",
                                      headers={"content-type": "application/json"})  # fmt: skip
                if r.status_code != 202:
                    raise SystemExit(f"ingest answered {r.status_code}: {r.text[:300]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def raw_ceiling(bootstrap: str, topic: str) -> tuple[int, int, float]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None,
                                max_partition_fetch_bytes=16 * 1024 * 1024)  # fmt: skip
    await consumer.start()
    try:
        while not consumer.assignment():  # noqa: ASYNC110 - aiokafka offers no event for this
            await asyncio.sleep(0.05)
        end = await consumer.end_offsets(list(consumer.assignment()))
        total = sum(end.values())
        records = events = 0
        started = time.perf_counter()
        while records < total:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for msgs in batch.values():
                for m in msgs:
                    records += 1
                    events += len(orjson.loads(m.value)["events"])
        return records, events, time.perf_counter() - started
    finally:
        await consumer.stop()


async def processed(pool: asyncpg.Pool) -> int:
    v = await pool.fetchval("SELECT coalesce(sum(events_processed), 0) FROM worker_stats")
    return int(v)


async def freshness(url: str, rate: int, seconds: int) -> tuple[list[float], list[float]]:
    """Post `rate` events/s for `seconds`; per batch, POST-return → visible in the
    API; and how long each of the poller's reads took (part of that latency: a
    batch counts as visible when the read that shows it returns)."""
    # Three hours back, at a volume scaled by the simulator's daily profile for the
    # hours ahead, so the events end well before now at any hour of the run: at
    # 6,000 calls/h unscaled, an evening run's 100,000 events ran past now + 1 h
    # and ingest refused them (max_future_seconds).
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    quietest = min(DAILY_PROFILE[(start.hour + h) % 24] for h in range(4))
    lines = simulate(rate * seconds, 991, start, calls_per_hour=6000 / quietest)
    offered_cum = []
    n = 0
    per_tick = max(1, rate // 20)  # 20 posts a second
    batches = [lines[i : i + per_tick] for i in range(0, len(lines), per_tick)]
    for b in batches:
        n += sum(1 for line in b if b'"call.offered"' in line)
        offered_cum.append(n)
    lo = (start - timedelta(minutes=1)).isoformat()
    hi = (start + timedelta(days=1)).isoformat()
    posted_at: list[float] = []
    seen_at: list[float | None] = [None] * len(batches)
    reads: list[float] = []
    done = asyncio.Event()

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def poller() -> None:
            while not done.is_set() or any(s is None for s in seen_at[: len(posted_at)]):
                asked = time.perf_counter()
                r = await client.get("/v1/kpis/center/all", params={"from": lo, "to": hi})
                now = time.perf_counter()
                reads.append(now - asked)
                offered = r.json()["offered"]
                for i in range(len(posted_at)):
                    if seen_at[i] is None and offered >= offered_cum[i]:
                        seen_at[i] = now
                await asyncio.sleep(0.02)

        poll = asyncio.create_task(poller())
        t0 = time.perf_counter()
        for i, b in enumerate(batches):
            due = t0 + i / 20
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            r = await client.post("/v1/events", content=b"\n".join(b),
                                  headers={"content-type": "application/x-ndjson"})  # fmt: skip
            assert r.status_code == 202, r.text
            posted_at.append(time.perf_counter())
        done.set()
        await asyncio.wait_for(poll, timeout=120)
    return [s - p for s, p in zip(seen_at, posted_at, strict=True) if s is not None], reads


async def idle_freshness(url: str, samples: int = 40) -> list[float]:
    """One call offered at a time on an otherwise idle stack: POST-return →
    visible in the API, `samples` times. The floor a loaded pipeline is
    compared with (issue 25: p99 under 5,000 events/s ≤ 2 × this p99)."""
    at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    lo = (at - timedelta(minutes=1)).isoformat()
    hi = (at + timedelta(minutes=1)).isoformat()
    out: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def offered() -> int:
            r = await client.get("/v1/kpis/center/all", params={"from": lo, "to": hi})
            return int(r.json()["offered"])

        before = await offered()
        for i in range(samples):
            event = {"event_id": f"idle-{i}", "type": "call.offered", "call_id": f"idle-{i}",
                     "queue_id": "billing", "occurred_at": at.isoformat()}  # fmt: skip
            r = await client.post("/v1/events", json=[event])
            assert r.status_code == 202, r.text
            posted = time.perf_counter()
            # polled as the freshness run polls (every 20 ms), so the two compare
            seen = await offered()
            while seen <= before:
                await asyncio.sleep(0.02)
                seen = await offered()
            out.append(time.perf_counter() - posted)
            before += 1
            await asyncio.sleep(0.3)
    return out


# A worker that neither processes nor commits for this long is stuck: say where,
# rather than wait for ever (a catch-up batch takes ~2 s).
STALL_S = 120.0


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def group_lag(bootstrap: str, prefix: str = "callkpi") -> dict[str, int]:
    """Records not yet committed by the worker group, per topic-partition, over both
    topics (stage 1 and the FCR stage): the worker is done only when both are
    drained. `prefix`: the workers' topic_prefix."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{prefix}-worker",
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        tps = [
            TopicPartition(t, p)
            for t in (f"{prefix}.events", f"{prefix}.fcr")
            for p in (consumer.partitions_for_topic(t) or set())
        ]
        ends = await consumer.end_offsets(tps)
        lag = {}
        for tp in tps:
            behind = ends[tp] - ((await consumer.committed(tp)) or 0)
            # (once, Tansu reported an end offset one below the group's commit
            # after everything was processed: nothing is left to read there)
            if behind > 0:
                lag[f"{tp.topic}[{tp.partition}]"] = behind
        return lag
    finally:
        await consumer.stop()


async def measure_worker(
    db: str, bootstrap: str, events: int, prefix: str = "callkpi"
) -> tuple[float, float]:
    """(events/s through stage 1 alone, events/s until both stages are drained and
    committed), from the worker's first commit."""
    pool = await asyncpg.create_pool(asyncpg_dsn(db), min_size=1, max_size=2)
    try:
        t_first: float | None = None
        t_stage1: float | None = None
        n_first = 0
        last_report = last_progress = time.perf_counter()
        progress: tuple[int, dict[str, int]] = (0, {})
        while True:
            n = await processed(pool)
            now = time.perf_counter()
            if n and t_first is None:
                t_first, n_first = now, n
            if n >= events and t_stage1 is None:
                t_stage1 = now
            lag = await group_lag(bootstrap, prefix) if t_stage1 is not None else {}
            if t_stage1 is not None and not lag:
                break
            if (n, lag) != progress:
                progress, last_progress = (n, lag), now
            elif now - last_progress > STALL_S:
                raise SystemExit(
                    f"no progress for {STALL_S:.0f} s: {n:,} of {events:,} events processed, "
                    f"uncommitted records {lag or 'none'}; see the worker's log"
                )
            if now - last_report > 5:
                log(f"  … {n:,} / {events:,}" + (" (FCR stage draining)" if t_stage1 else ""))
                last_report = now
            await asyncio.sleep(0.1)
        assert t_first is not None and t_stage1 is not None
        done = events - n_first
        return done / max(t_stage1 - t_first, 1e-6), done / max(now - t_first, 1e-6)
    finally:
        await pool.close()


def _busy(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def create_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def worker_port(n: int) -> int:
    """A port with the n - 1 after it free too (worker --processes N serves health
    on --port … --port + N − 1)."""
    port = free_port()
    while n > 1 and any(_busy(port + i) for i in range(n)):
        port = free_port()
    return port


def main(args: argparse.Namespace) -> None:
    counts = [int(c) for c in args.processes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="callkpi-bench-"))
    stack = Stack(tmp, cwd=ROOT)
    try:
        bootstrap = stack.embedded_broker()
        db = stack.embedded_postgres(tmp / "pg")
        stack.migrate()
        port = free_port()
        stack.env.update({"CALLKPI_HASH_KEY": "bench", "CALLKPI_PARTITIONS": "8"})
        api = stack.spawn("api", "api", "--with-ingest", "--port", str(port))
        url = f"http://127.0.0.1:{port}"
        stack.wait_ready(f"{url}/readyz", 60, api)

        log(f"generating {args.events:,} simulated events …")
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=20)
        lines = simulate(args.events, 7, start, calls_per_hour=6000)
        log("posting them to ingest (no worker yet, so they wait in the broker) …")
        took = asyncio.run(post_all(url, lines, 5000))
        ingest_rate = len(lines) / took
        log(f"  ingest: {len(lines):,} events in {took:.1f} s = {ingest_rate:,.0f} events/s")

        records, events, raw_s = asyncio.run(raw_ceiling(bootstrap, "callkpi.events"))
        ceiling = events / raw_s
        log(
            f"  raw ceiling (aiokafka getmany + decode): {records:,} records, "
            f"{events:,} events in {raw_s:.2f} s = {ceiling:,.0f} events/s "
            f"({records / raw_s:,.0f} records/s)"
        )

        rates: dict[int, tuple[float, float]] = {}
        idle: list[float] = []
        lat: list[float] = []
        for i, n in enumerate(counts):
            env: dict[str, str] = {}
            if i:
                # Each count on the same backlog from the start: the same events posted
                # again under a topic prefix and a database of its own (a worker
                # group that re-read the first topic into the first database would
                # find every event already counted).
                prefix, name = f"bench{i}", f"callkpi_bench{i}"
                asyncio.run(create_database(db, name))
                env = {"CALLKPI_TOPIC_PREFIX": prefix,
                       "CALLKPI_DATABASE_URL": stack.pg.url(name) if stack.pg else db}  # fmt: skip
                stack.migrate(env["CALLKPI_DATABASE_URL"])
                iport = free_port()
                ingest = stack.spawn(f"api-{prefix}", "api", "--with-ingest", "--port",
                                     str(iport), env=env)  # fmt: skip
                stack.wait_ready(f"http://127.0.0.1:{iport}/readyz", 60, ingest)
                log(f"posting the same events again under topic prefix {prefix!r} …")
                asyncio.run(post_all(f"http://127.0.0.1:{iport}", lines, 5000))
                ingest.stop()
            worker = stack.spawn(f"worker-{n}", "worker", "--port", str(worker_port(n)),
                                 "--processes", str(n), env=env)  # fmt: skip
            log(f"starting {'one worker' if n == 1 else f'{n} worker processes'} on the backlog …")
            wdb, wprefix = env.get("CALLKPI_DATABASE_URL", db), env.get("CALLKPI_TOPIC_PREFIX")
            rates[n] = asyncio.run(measure_worker(wdb, bootstrap, events, wprefix or "callkpi"))
            log(
                f"  worker ×{n}: {events:,} events; call assembly alone {rates[n][0]:,.0f} "
                f"events/s; all stages drained and committed {rates[n][1]:,.0f} events/s"
            )
            if i == 0:
                log("freshness of single calls on the idle stack …")
                idle = asyncio.run(idle_freshness(url))
                log(f"  POST→visible in API: p50 {pct(idle, 50):.3f} s, p99 {pct(idle, 99):.3f} "
                    f"s over {len(idle)} calls")  # fmt: skip
                log(f"freshness at {args.rate:,} events/s for {args.seconds} s …")
                lat, reads = asyncio.run(freshness(url, args.rate, args.seconds))
                log(f"  POST→visible in API: p50 {pct(lat, 50):.3f} s, p99 {pct(lat, 99):.3f} s, "
                    f"max {max(lat):.3f} s over {len(lat)} batches; the poller's reads took "
                    f"p50 {pct(reads, 50):.3f} s, p99 {pct(reads, 99):.3f} s")  # fmt: skip
            if i < len(counts) - 1:
                worker.stop()
        log("")
        log(f"summary (one run, this machine, {os.cpu_count()} cores; logs in {tmp})")
        log(f"  raw getmany ceiling      {ceiling:>10,.0f} events/s")
        first = counts[0]
        for n in counts:
            stage1, rate = rates[n]
            who = "one process " if n == 1 else f"{n} processes"
            target = " (issue 25: ≥ 10%)" if n == 1 else ""
            if n > 1 and 1 in rates:
                one = rates[1][1] / ceiling
                target = (f" = {rate / rates[1][1]:.2f} × one process (issue 25: ≥ 0.8 × {n} × "
                          f"{one:.1%} = {0.8 * n * one:.1%} of ceiling)")  # fmt: skip
            elif n > 1:
                target = f" (issue 25: ≥ 0.8 × {n} × the one-process ratio)"
            log(f"  worker, stage 1 only, ×{n} {stage1:>9,.0f} events/s")
            log(f"  worker, {who}     {rate:>10,.0f} events/s  "
                f"= {rate / ceiling:.1%} of ceiling{target}")  # fmt: skip
        log(f"  ingest, one process      {ingest_rate:>10,.0f} events/s")
        log(f"  freshness p99 @ {args.rate:,}/s {pct(lat, 99):>8.3f} s  = "
            f"{pct(lat, 99) / pct(idle, 99):.2f} × the idle stack's p99 "
            f"{pct(idle, 99):.3f} s (issue 25: ≤ 2; worker ×{first})")  # fmt: skip
    finally:
        stack.stop(destroy=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--rate", type=int, default=5_000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--processes", default="1",
                    help="worker processes on the backlog (worker --processes); several, "
                         "comma-separated (1,2), are each measured on the same backlog in "
                         "this run")  # fmt: skip
    main(ap.parse_args())
