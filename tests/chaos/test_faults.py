"""The fault suite (`make chaos`; part of `make test`): real processes, a real broker
and a real Postgres of its own, each fault followed by two checks: the figures
equal the batch reference on every field, and /readyz and /metrics said the truth
while it lasted. Each case has its own database and topics; the faults to the
broker and Postgres hit this module's servers only.

Each case appends what it measured (fields compared, identical, time to recover)
to test-artifacts/chaos.jsonl.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.core.db import LOCK_EVENTS, asyncpg_dsn
from services.devstack import EmbeddedBroker, EmbeddedPostgres
from services.migrations import upgrade
from tests.support.databases import ARTIFACTS, processed, stack_env
from tests.support.simulated import converge, simulated
from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.chaos

# Faults last long enough that every retry path runs several times (the worker
# retries at most 4 s apart), short enough to keep the suite within minutes.
OUTAGE_S = 8.0
STALL_S = 5  # the cases' worker_stall_seconds
CONVERGE_S = 120.0


@dataclass
class Rig:
    pg: EmbeddedPostgres
    broker: EmbeddedBroker
    n: int = 0

    def stack(self, name: str, **extra: str) -> tuple[Stack, str]:
        """A fresh database (migrated) and topic prefix, and an API and worker."""
        self.n += 1
        db = self.pg.url(f"chaos{self.n}")
        self.pg._ensure_database(f"chaos{self.n}")
        upgrade(db)
        settings = {"CALLKPI_WORKER_STALL_SECONDS": str(STALL_S),
                    "CALLKPI_PIPELINE_POLL_SECONDS": "0.5",
                    "CALLKPI_ENVELOPE_MAX_EVENTS": "100", **extra}  # fmt: skip
        env = stack_env(self.broker, db, f"chaos{self.n}{name}", **settings)
        for old in ARTIFACTS.glob(f"chaos-{name}-*.log"):
            old.unlink()
        return Stack(env, logs=f"chaos-{name}-").start(), db


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    root = Path(tempfile.mkdtemp(prefix="callkpi-chaos-"))
    # durable: with synchronous_commit off (the other tests' setting) a crash loses
    # commits Postgres already confirmed, which no client can repair
    pg = EmbeddedPostgres(root / "pg", durable=True)
    pg.start()
    broker = EmbeddedBroker(log_path=ARTIFACTS / "chaos-broker.log")
    broker.start()
    yield Rig(pg, broker)
    broker.stop()
    pg.destroy()
    shutil.rmtree(root, ignore_errors=True)


def record(case: str, **figures: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "chaos.jsonl").open("a") as fh:
        fh.write(json.dumps({"case": case, "at": datetime.now(UTC).isoformat(), **figures}) + "\n")


def history(seed: int, hours_ago: int = 3) -> tuple[list[dict[str, Any]], str, str]:
    """An hour of the simulated center, ending well in the past, and its range."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=hours_ago)
    events = simulated(seed, 60, start)
    lo = (start - timedelta(minutes=1)).isoformat()
    hi = (start + timedelta(hours=hours_ago)).isoformat()
    return events, lo, hi


def post_retrying(stack: Stack, events: list[dict[str, Any]], size: int = 500,
                  pause: float = 0.0) -> int:  # fmt: skip
    """Post as a feeder does: every batch until it gets a 202, whatever the
    outage; returns how many 503s and connection errors it met."""
    refused = 0
    for i in range(0, len(events), size):
        while True:
            try:
                r = stack.post(events[i : i + size])
            except httpx.HTTPError:
                refused += 1
                time.sleep(0.25)
                continue
            if r.status_code == 202:
                break
            assert r.status_code == 503, r.text
            refused += 1
            time.sleep(0.25)
        time.sleep(pause)
    return refused


def stored_calls(db: str) -> int:
    """Calls the worker has committed (a replay after a kill stores no new ones)."""
    import asyncio

    async def q() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(db))
        try:
            return int(await conn.fetchval("SELECT count(*) FROM calls"))
        finally:
            await conn.close()

    return asyncio.run(q())


def get(url: str) -> tuple[int, Any]:
    try:
        r = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        return 0, str(exc)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


def worker_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.worker_port}"


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    value = wait_until(check, timeout, 0.2)
    assert value, f"not seen within {timeout:.0f} s: {what}"
    return value


def says(status_body: tuple[int, Any], status: int, word: str) -> Any:
    """The body, if the answer has `status` and mentions `word`; else None."""
    code, body = status_body
    return body if code == status and word in json.dumps(body) else None


def metric(text: str, name: str) -> list[float]:
    return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")]  # fmt: skip


def scrape(url: str) -> str:
    r = httpx.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200, r.status_code
    return r.text


def test_worker_sigkilled_at_random_points_gives_reference_figures(rig: Rig) -> None:
    # batches of 4 records of 50 events: many commits, so a kill lands between some
    stack, db = rig.stack("kill", CALLKPI_ENVELOPE_MAX_EVENTS="50", CALLKPI_WORKER_TAKE_MAX="4")
    try:
        events, lo, hi = history(31)
        stack.worker.kill()
        post_retrying(stack, events, size=2000)
        rnd = random.Random(2026)
        shares = sorted(rnd.uniform(0.05, 0.7) for _ in range(3))
        kills = []
        calls = len({ev["call_id"] for ev in events if "call_id" in ev})
        for share in shares:
            stack.restart_worker()
            assert wait_until(lambda s=share: stored_calls(db) >= s * calls, 90, 0.01)
            stack.worker.kill()  # SIGKILL: no shutdown, no offset commit
            kills.append(stored_calls(db))
        # (a restarted worker may finish the calls before the next kill lands; the
        # FCR stage and agent time may still be in flight then)
        assert 0 < kills[0] < calls, f"first kill not mid-stream: {kills} of {calls}"
        stack.restart_worker()
        restarted = time.monotonic()
        fields, _ = converge(stack, events, lo, hi, CONVERGE_S)
        record("worker SIGKILL", calls_stored_at_kills=kills, calls=calls, events=len(events),
               fields=fields, identical=True,
               recovered_s=round(time.monotonic() - restarted, 1))  # fmt: skip
    finally:
        stack.stop()


def test_postgres_stopped_reads_answer_503_metrics_keep_serving_and_figures_recover(
    rig: Rig,
) -> None:
    stack, db = rig.stack("pg")
    try:
        events, lo, hi = history(32)
        half = len(events) // 2
        post_retrying(stack, events[:half], size=2000)
        assert wait_until(lambda: processed(db) >= half, 60)
        rig.pg.stop(mode="immediate")  # as a crash: no clean shutdown
        stopped = time.monotonic()
        # ingest still takes events (the broker is up); the worker cannot count them
        post_retrying(stack, events[half:], size=2000)
        api = until(lambda: says(get(f"{stack.url}/readyz"), 503, "postgres"), 10,
                    "API /readyz 503 naming postgres")  # fmt: skip
        code, body = get(f"{stack.url}/v1/kpis/center/all")
        assert code == 503 and body["detail"].startswith("postgres unavailable"), body
        text = scrape(stack.url)
        assert metric(text, 'callkpi_dependency_up{dependency="postgres"}') == [0.0]
        assert metric(text, "callkpi_pipeline_backlog_records"), "pipeline gauges missing"
        until(lambda: says(get(f"{worker_url(stack)}/readyz"), 503, "postgres"), 15,
              "worker /readyz 503 naming postgres")  # fmt: skip
        until(lambda: any(v > 0 for v in metric(scrape(stack.url),
                                                 "callkpi_pipeline_behind_seconds")),
              10, "the backlog's age growing")  # fmt: skip
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        rig.pg.start()
        back = time.monotonic()
        until(lambda: get(f"{worker_url(stack)}/readyz")[0] == 200, 20, "worker ready again")
        ready_s = time.monotonic() - back
        # retries are at most 4 s apart: counting resumes within seconds, not 30
        assert ready_s < 12, f"worker ready {ready_s:.1f} s after Postgres returned"
        fields, _ = converge(stack, events, lo, hi, CONVERGE_S)
        recovered = time.monotonic() - back
        # the log lines name Postgres, whichever part of the API met it
        sink = [line for line in stack.api.log.read_text().splitlines() if " sink: " in line]
        assert sink and all(" sink: postgres: " in line for line in sink), sink[:3]
        waits = metric(scrape(worker_url(stack)), "callkpi_worker_retry_wait_seconds_total")
        assert sum(waits) > 0, "retry time not in the worker's /metrics"
        assert says(get(f"{stack.url}/readyz"), 200, "ready")
        record("postgres stopped (immediate) and restarted", outage_s=OUTAGE_S, fields=fields,
               identical=True, worker_ready_after_s=round(ready_s, 1),
               recovered_s=round(recovered, 1), api_readyz=api)  # fmt: skip
    finally:
        stack.stop()


def test_broker_restarted_with_its_memory_lost_heals_offsets_topics_and_fcr(rig: Rig) -> None:
    stack, db = rig.stack("broker")
    try:
        events, lo, hi = history(33)
        first = int(len(events) * 0.4)
        post_retrying(stack, events[:first], size=2000)
        assert wait_until(lambda: processed(db) >= first, 60)
        # a feeder keeps posting through the outage (facts are in flight when it hits)
        feeder = threading.Thread(
            target=post_retrying, args=(stack, events[first:], 300, 0.05), daemon=True
        )
        feeder.start()
        time.sleep(0.5)
        rig.broker.stop()  # memory storage: topics, records and offsets are gone
        stopped = time.monotonic()
        until(lambda: says(get(f"{stack.url}/readyz"), 503, "broker"), 10,
              "API /readyz 503 naming the broker")  # fmt: skip
        until(lambda: says(get(f"{worker_url(stack)}/readyz"), 503, "broker"), 10,
              "worker /readyz 503 naming the broker")  # fmt: skip
        t = time.monotonic()
        r = stack.post(events[:1])
        assert r.status_code == 503 and "broker" in r.json()["error"], r.text
        assert time.monotonic() - t < 3, "ingest hung instead of refusing at once"
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        rig.broker.start()
        back = time.monotonic()
        feeder.join(120)
        assert not feeder.is_alive(), "the feeder never got through"
        # what the broker held and the worker had not read is gone: re-posting
        # every event (ids make it harmless) is the remedy; for FCR facts lost
        # between the stages the worker reconciles on its own
        post_retrying(stack, events, size=2000)
        fields, _ = converge(stack, events, lo, hi, CONVERGE_S)
        recovered = time.monotonic() - back
        worker_metrics = scrape(worker_url(stack))
        assert sum(metric(worker_metrics, "callkpi_broker_losses_total")) > 0, "loss not seen"
        # offsets are committed again: every partition's backlog drains to 0
        until(lambda: get(f"{stack.url}/readyz")[1].get("pipeline", {}).get("backlog") == 0,
              30, "committed offsets reaching the end offsets")  # fmt: skip
        # the worker sees it too at its next poll of the offsets
        until(lambda: get(f"{worker_url(stack)}/readyz")[0] == 200, 15, "worker ready again")
        resent = sum(metric(worker_metrics, "callkpi_reconcile_facts_resent_total"))
        # an API started now finds the topics the broker already has again
        stack.restart_api()
        assert stack.post(events[:10]).status_code == 202
        record("broker stopped and restarted (memory lost)", outage_s=OUTAGE_S, fields=fields,
               identical=True, recovered_s=round(recovered, 1), facts_resent=resent,
               events=len(events), processed=processed(db))  # fmt: skip
    finally:
        stack.stop()


def test_api_sigkilled_mid_request_loses_no_event_it_accepted(rig: Rig) -> None:
    stack, _db = rig.stack("api")
    try:
        events, lo, hi = history(34)
        feeder = threading.Thread(target=post_retrying, args=(stack, events, 400, 0.02),
                                  daemon=True)  # fmt: skip
        feeder.start()
        time.sleep(1.0)
        stack.api.kill()  # SIGKILL in the middle of the feeder's requests
        time.sleep(1.0)
        stack.restart_api(kill=False)
        feeder.join(120)
        assert not feeder.is_alive()
        fields, seconds = converge(stack, events, lo, hi, CONVERGE_S)
        record("API SIGKILL mid-request", fields=fields, identical=True,
               converged_s=round(seconds, 1))  # fmt: skip
    finally:
        stack.stop()


def test_worker_stuck_on_a_lock_is_reported_stalled_and_figures_say_they_are_behind(
    rig: Rig,
) -> None:
    stack, db = rig.stack("stall")
    import asyncio

    async def hold(release: threading.Event) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(db))
        try:
            async with conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1, p) FROM generate_series(0, 3) AS p",
                    LOCK_EVENTS,
                )
                held.set()
                await asyncio.to_thread(release.wait, 120)
        finally:
            await conn.close()

    held, release = threading.Event(), threading.Event()
    locker = threading.Thread(target=lambda: asyncio.run(hold(release)), daemon=True)
    try:
        events, lo, hi = history(35)
        locker.start()
        assert held.wait(10)
        post_retrying(stack, events, size=2000)
        worker = until(lambda: says(get(f"{worker_url(stack)}/readyz"), 503, "stalled"),
                       STALL_S + 10, "worker /readyz 503: stalled")  # fmt: skip
        # the API watches the offsets on its own poll: it says so within a poll or two
        # of the worker (the two monitors' stall clocks start apart)
        until(lambda: says(get(f"{stack.url}/v1/kpis/center/all?from={lo}&to={hi}".replace("+", "%2B")),
                           200, '"behind": true'), 5, "the API saying the figures are behind")  # fmt: skip
        r = stack.get("/v1/kpis/center/all", **{"from": lo, "to": hi})
        body = r.json()
        assert r.status_code == 200 and body["pipeline"]["behind"] is True, body.get("pipeline")
        assert body["pipeline"]["stalled"], body["pipeline"]
        assert body["pipeline"]["behind_seconds"] >= STALL_S, body["pipeline"]
        stalled = metric(scrape(stack.url), "callkpi_pipeline_stalled_seconds")
        assert max(stalled) >= STALL_S, stalled
        release.set()
        freed = time.monotonic()
        until(lambda: get(f"{worker_url(stack)}/readyz")[0] == 200, 20, "worker ready again")
        fields, _ = converge(stack, events, lo, hi, CONVERGE_S)
        until(lambda: get(f"{stack.url}/v1/kpis/center/all")[1]["pipeline"]["behind"] is False,
              10, "figures no longer flagged behind")  # fmt: skip
        record("worker stuck on a lock", stall_setting_s=STALL_S, fields=fields, identical=True,
               recovered_s=round(time.monotonic() - freed, 1), worker_readyz=worker)  # fmt: skip
    finally:
        release.set()
        locker.join(10)
        stack.stop()


def test_two_worker_processes_share_the_partitions_and_one_sigkilled_changes_no_figure(
    rig: Rig,
) -> None:
    import psutil

    from services.devstack import free_port

    stack, db = rig.stack("procs", CALLKPI_ENVELOPE_MAX_EVENTS="50", CALLKPI_WORKER_TAKE_MAX="4")
    try:
        # every partition of the group's topics, as one worker holds them all
        total = until(lambda: says(get(f"{worker_url(stack)}/readyz"), 200, "partitions"), 60,
                      "the single worker ready")["partitions"]  # fmt: skip
        stack.worker.kill()  # this case runs `callkpi worker --processes 2` instead
        port = free_port()
        while not all(_port_free(p) for p in (port, port + 1)):
            port = free_port()
        supervisor = stack.services.spawn("chaos-procs-workers", "worker", "--port", str(port),
                                          "--processes", "2")  # fmt: skip
        urls = [f"http://127.0.0.1:{p}" for p in (port, port + 1)]

        def shares() -> list[int] | None:
            ready = [get(f"{u}/readyz") for u in urls]
            if all(code == 200 for code, _ in ready):
                return [body["partitions"] for _, body in ready]
            return None

        # the group's partitions split between the two
        split = until(lambda: (s := shares()) and sum(s) == total and min(s) >= 1 and s, 90,
                      "both worker processes ready with partitions")  # fmt: skip
        events, lo, hi = history(37)
        calls = len({ev["call_id"] for ev in events if "call_id" in ev})
        post_retrying(stack, events, size=2000)
        assert supervisor.p is not None
        children = psutil.Process(supervisor.p.pid).children()
        assert len(children) == 2
        until(lambda: stored_calls(db) >= 0.2 * calls, 90, "a fifth of the calls stored")
        children[0].kill()  # SIGKILL one: its partitions go to the other, it comes back
        at_kill = stored_calls(db)
        killed = time.monotonic()
        fields, _ = converge(stack, events, lo, hi, CONVERGE_S)
        recovered = time.monotonic() - killed
        assert at_kill < calls, f"the kill came after every call was stored ({at_kill})"
        # the supervisor started it again and the group split the partitions anew
        again = until(lambda: (s := shares()) and sum(s) == total and min(s) >= 1 and s, 90,
                      "the killed worker back with partitions")  # fmt: skip
        now = {c.pid for c in psutil.Process(supervisor.p.pid).children()}
        assert len(now) == 2 and children[0].pid not in now and children[1].pid in now
        log = (ARTIFACTS / "chaos-procs-workers.log").read_text()
        assert "killed by SIGKILL; starting it again" in log
        record("two worker processes, one SIGKILLed", partitions_before=split,
               partitions_after=again, calls_stored_at_kill=at_kill, calls=calls,
               events=len(events), fields=fields, identical=True,
               recovered_s=round(recovered, 1))  # fmt: skip
        supervisor.stop()
        assert supervisor.p.returncode == 0
        assert all(not c.is_running() or c.status() == psutil.STATUS_ZOMBIE for c in children)
    finally:
        stack.stop()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
