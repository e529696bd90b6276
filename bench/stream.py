"""`make bench-stream` (and the end of `make bench`): how many wallboard feeds one
API process holds, and how late their updates are.

One API process (with ingest) and one worker on the example roster. Each round
posts one waiting call on the billing queue and times, for every connected
client, the first `update` frame showing it (the team's `in_queue` reaching the
round's count), from the POST's return. In the same run, for comparison:
  * the ceiling the feed cannot beat: the same call visible through the read API
    (GET /v1/kpis polled every 20 ms): worker commit latency, no feed at all;
  * one client alone, then N clients at once (default 500): the cost of fan-out.

The clients are raw asyncio sockets in this process (a browser's EventSource is
no cheaper for the server); the API runs in its own process, as deployed.

Options: --clients N, --rounds R.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import psutil

from bench.pipeline import log, pct
from services.api.stream import MIN_GAP_S
from services.devstack import Stack, free_port

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "deploy" / "config" / "callkpi.example.yaml"
PATH = "/v1/stream?entity=center:all&kind=team"
ROUND_GAP_S = 3.0


class Client:
    """Reads one feed; records when the billing team's in_queue first reaches n."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self.frames = 0
        self.failed: str | None = None

    async def run(self, port: int, ready: asyncio.Event) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {PATH} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            await writer.drain()
            status = await reader.readline()
            if b" 200 " not in status:
                self.failed = status.decode().strip()
                ready.set()
                return
            ready.set()
            while True:
                line = await reader.readline()
                if not line:
                    self.failed = "closed by the server"
                    return
                # chunked encoding: frame bytes arrive inside chunks; data lines
                # are whole because the hub writes each frame in one chunk
                if not line.startswith(b"data: ") or b'"id":"billing"' not in line:
                    continue
                body = orjson.loads(line[6:])
                tiles = body.get("entities", [body])  # a snapshot, or one update
                for tile in tiles:
                    if tile["id"] == "billing":
                        self.frames += 1
                        self.seen.setdefault(tile["live"]["in_queue"], time.monotonic())
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.failed = repr(exc)


async def rounds(
    url: str, port: int, n_clients: int, n_rounds: int, first: int
) -> tuple[list[float], list[float], int, float]:
    """Connect n clients, then post `n_rounds` waiting calls; returns (feed
    latencies, API-visible latencies, clients that saw every round, API CPU %)."""
    clients = [Client() for _ in range(n_clients)]
    tasks = []
    for c in clients:
        ready = asyncio.Event()
        tasks.append(asyncio.create_task(c.run(port, ready)))
        await ready.wait()
    failed = [c.failed for c in clients if c.failed]
    if failed:
        raise SystemExit(f"{len(failed)} clients refused: {failed[0]}")
    api = next(
        p for p in psutil.process_iter(["cmdline"]) if str(port) in (p.info["cmdline"] or [])
    )
    api.cpu_percent()
    feed_lat: list[float] = []
    api_lat: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for r in range(n_rounds):
            want = first + r + 1
            cid = f"bench-stream-{first}-{r}"
            now = datetime.now(UTC).isoformat()
            event = {"event_id": f"{cid}-o", "type": "call.offered", "call_id": cid,
                     "queue_id": "billing", "occurred_at": now}  # fmt: skip
            resp = await http.post("/v1/events", json=[event])
            assert resp.status_code == 202, resp.text
            posted = time.monotonic()
            while True:
                body = (await http.get("/v1/kpis/team/billing", params={"window": "15m"})).json()
                if body["live"]["in_queue"] >= want:
                    api_lat.append(time.monotonic() - posted)
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(ROUND_GAP_S)
            feed_lat += [c.seen[want] - posted for c in clients if want in c.seen]
    cpu = api.cpu_percent()
    held = sum(
        1
        for c in clients
        if c.failed is None and all(first + r + 1 in c.seen for r in range(n_rounds))
    )
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return feed_lat, api_lat, held, cpu


def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="callkpi-bench-stream-"))
    stack = Stack(tmp, cwd=ROOT)
    try:
        stack.embedded_broker()
        stack.embedded_postgres(tmp / "pg")
        stack.migrate()
        port = free_port()
        stack.env.update(
            {"CALLKPI_CONFIG": str(CONFIG), "CALLKPI_HASH_KEY": "bench", "CALLKPI_PARTITIONS": "8"}
        )
        api = stack.spawn("api", "api", "--with-ingest", "--port", str(port))
        stack.spawn("worker", "worker", "--port", str(free_port()))
        url = f"http://127.0.0.1:{port}"
        stack.wait_ready(f"{url}/readyz", 60, api)
        time.sleep(8)  # the worker joins its group

        log(f"one client, {args.rounds} rounds of one waiting call each …")
        one, api1, held1, cpu1 = asyncio.run(rounds(url, port, 1, args.rounds, 0))
        log(f"{args.clients} clients, {args.rounds} rounds …")
        many, api_n, held, cpu = asyncio.run(
            rounds(url, port, args.clients, args.rounds, args.rounds)
        )
        visible = api1 + api_n
        log("")
        log(f"summary (one run, this machine, {os.cpu_count()} cores; logs in {tmp})")
        log(f"  ceiling: POST → visible in GET /v1/kpis   p50 {pct(visible, 50):.3f} s, "
            f"p95 {pct(visible, 95):.3f} s (the worker's commit: the feed reads on its "
            f"NOTIFY, reads at least {MIN_GAP_S} s apart)")  # fmt: skip
        log(f"  1 client:   POST → update on the feed     p50 {pct(one, 50):.3f} s, "
            f"max {max(one):.3f} s; held {held1}/1; API CPU {cpu1:.0f}%")  # fmt: skip
        log(f"  {args.clients} clients: POST → update on the feed   p50 {pct(many, 50):.3f} s, "
            f"p95 {pct(many, 95):.3f} s, max {max(many):.3f} s over {len(many):,} updates; "
            f"held {held}/{args.clients}; API CPU {cpu:.0f}%")  # fmt: skip
        log(
            f"  fan-out cost: p50 {args.clients} clients / 1 client = "
            f"{statistics.median(many) / statistics.median(one):.2f}×"
        )
        # issue 25's target: the feed adds at most 30% to the commit's own latency
        log(
            f"  update p95 with {args.clients} clients ÷ visible-in-API p95 = "
            f"{pct(many, 95) / pct(visible, 95):.2f} (target ≤ 1.3)"
        )
    finally:
        stack.stop(destroy=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=10)
    main(ap.parse_args())
