"""`callkpi asterisk follow`: a live queue_log tailed into ingest, across log
rotations, from a checkpoint that survives restarts, with its own Prometheus
metrics (docs/asterisk.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from services.asterisk.importer import BATCH_LINES
from services.asterisk.queue_log import Line, Malformed, Mapper, Stats, parse_line
from services.ingest.client import log_rejections, post_events

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("callkpi.asterisk")


class _MapperStats(Collector):
    """The mapper's own counts (lines, skipped by reason, malformed), read at
    scrape time rather than copied into counters after every batch."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        yield CounterMetricFamily("callkpi_asterisk_lines", "queue_log lines read", s.lines)
        skipped = CounterMetricFamily(
            "callkpi_asterisk_lines_skipped", "lines not mapped", labels=["reason"]
        )
        for reason, n in s.skipped.items():
            skipped.add_metric([reason], n)
        yield skipped
        yield CounterMetricFamily(
            "callkpi_asterisk_lines_malformed", "unreadable lines", s.malformed_count
        )


class FollowMetrics:
    def __init__(self, stats: Stats) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        r.register(_MapperStats(stats))
        self.events = Counter("callkpi_asterisk_events", "events sent to ingest", registry=r)
        self.retries = Counter(
            "callkpi_asterisk_post_failures", "failed posts to ingest (retried)", registry=r
        )
        self.lag = Gauge(
            "callkpi_asterisk_lag_seconds", "now minus the newest line sent", registry=r
        )
        self.behind = Gauge(
            "callkpi_asterisk_bytes_behind", "bytes of the file not yet sent", registry=r
        )
        self.rotations = Counter("callkpi_asterisk_rotations", "log rotations seen", registry=r)


@dataclass
class Checkpoint:
    """Where the follower is: the file (inode) and the offset after the last
    line whose events ingest accepted, with the open calls as of that line."""

    inode: int
    offset: int
    calls: dict[str, Any]
    lineno: int = 0
    # the file's first bytes (up to 64): a file truncated and written again past
    # the offset has the same inode and size enough, but not the same start
    head: bytes = b""

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SystemExit(
                f"{path}: unreadable checkpoint ({exc}); move it away to start over"
            ) from None
        return cls(int(data["inode"]), int(data["offset"]), dict(data["calls"]),
                   int(data.get("lineno", 0)), bytes.fromhex(data.get("head", "")))  # fmt: skip

    def save(self, path: Path) -> None:
        """Atomically: a crash leaves the old checkpoint or the new one."""
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as fh:
            json.dump({"inode": self.inode, "offset": self.offset, "calls": self.calls,
                       "lineno": self.lineno, "head": self.head.hex()}, fh)  # fmt: skip
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dirfd = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


class Follower:
    """Tails a live queue_log: survives rotation by rename (the old file is read
    to its end first) and by copytruncate (the file shrinks: start over at 0),
    resumes from an atomic checkpoint with no loss and no duplicate, and retries
    ingest for as long as it is down without reading further."""

    def __init__(self, path: Path, checkpoint: Path, client: httpx.AsyncClient, mapper: Mapper,
                 tz: ZoneInfo, poll_s: float = 0.25,
                 metrics: FollowMetrics | None = None) -> None:  # fmt: skip
        self.path = path
        self.checkpoint_path = checkpoint
        self.client = client
        self.mapper = mapper
        self.tz = tz
        self.poll_s = poll_s
        self.metrics = metrics or FollowMetrics(mapper.stats)
        self._head = b""

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        cp = Checkpoint.load(self.checkpoint_path)
        fh, inode = await self._open_when_present(stop)
        if fh is None:
            return
        offset, lineno = 0, 0
        if (
            cp is not None
            and cp.inode == inode
            and cp.offset <= os.fstat(fh.fileno()).st_size
            and _head(fh, len(cp.head)) == cp.head
        ):
            offset, lineno = cp.offset, cp.lineno
            self.mapper.restore(cp.calls)
            log.info("resuming %s at byte %d (line %d)", self.path, offset, lineno)
        elif cp is not None:
            # rotated while we were down: the old file is gone from this path;
            # import it with `callkpi asterisk import` if it had unsent lines
            log.warning("%s is a new file since the checkpoint (inode %d, was %d); from its start",
                        self.path, inode, cp.inode)  # fmt: skip
            self.mapper.restore(cp.calls)
        fh.seek(offset)
        self._head = _head(fh, min(HEAD, offset))
        partial = b""
        try:
            while not stop.is_set():
                chunk = fh.read(1 << 20)
                if chunk:
                    data = partial + chunk
                    cut = data.rfind(b"\n") + 1
                    partial = data[cut:]  # an unfinished last line waits for its end
                    offset, lineno = await self._send(fh, data[:cut], offset, lineno, inode)
                    continue
                size_now = os.fstat(fh.fileno()).st_size
                self.metrics.behind.set(max(0, size_now - offset))
                try:
                    st = os.stat(self.path)
                except FileNotFoundError:
                    st = None
                if st is not None and st.st_ino != inode:
                    # renamed away and replaced: the old file is read to its end
                    # (done: read returned nothing), then the new one from 0
                    fh.close()
                    self.metrics.rotations.inc()
                    log.info("%s rotated (rename); following the new file", self.path)
                    fh, inode = await self._open_when_present(stop)
                    if fh is None:
                        return
                    offset, lineno, partial, self._head = 0, 0, b"", b""
                    continue
                if st is not None and (
                    st.st_size < offset or _head(fh, min(HEAD, offset)) != self._head
                ):
                    self.metrics.rotations.inc()
                    log.info("%s truncated (copytruncate); from its start", self.path)
                    fh.seek(0)
                    offset, lineno, partial, self._head = 0, 0, b"", b""
                    continue
                await _pause(stop, self.poll_s)
        finally:
            if fh is not None:
                fh.close()

    async def _open_when_present(self, stop: asyncio.Event) -> tuple[Any, int]:
        while not stop.is_set():
            try:
                fh = self.path.open("rb")
            except FileNotFoundError:
                await _pause(stop, self.poll_s)
                continue
            return fh, os.fstat(fh.fileno()).st_ino
        return None, 0

    async def _send(
        self, fh: Any, block: bytes, offset: int, lineno: int, inode: int
    ) -> tuple[int, int]:
        """Map whole lines of `block` (starting at `offset`), post them in
        batches, checkpoint after each accepted batch."""
        lines = block.split(b"\n")[:-1]
        pos = offset
        events: list[dict[str, Any]] = []
        newest = 0.0
        for i, raw in enumerate(lines, start=1):
            pos += len(raw) + 1
            lineno += 1
            text = raw.decode("utf-8", errors="replace")
            if not text.strip():
                continue
            item = parse_line(text, lineno, self.tz)
            if isinstance(item, Malformed):
                log.warning("%s %s", self.path.name, item)
            if isinstance(item, Line):
                newest = max(newest, item.at)
            events += self.mapper.feed(item)
            if i % BATCH_LINES == 0 or i == len(lines):
                await self._post(events)
                self.mapper.forget_finished()
                if len(self._head) < HEAD:
                    self._head = _head(fh, min(HEAD, pos))
                cp = Checkpoint(inode, pos, self.mapper.state(), lineno, self._head)
                cp.save(self.checkpoint_path)
                events = []
        if newest:
            self.metrics.lag.set(max(0.0, time.time() - newest))
        return pos, lineno

    async def _post(self, events: list[dict[str, Any]]) -> None:
        delay = 0.5
        while True:
            try:
                accepted, rejected = await post_events(self.client, events, patience_s=0)
            except Exception as exc:
                # ingest down: keep these lines (nothing further is read) and retry
                self.metrics.retries.inc()
                log.warning("ingest: %s; retrying in %.1fs (nothing is lost)", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self.metrics.events.inc(accepted)
            log_rejections(rejected)
            return


HEAD = 64


def _head(fh: Any, n: int) -> bytes:
    """The first n bytes of the open file (without moving its position)."""
    return os.pread(fh.fileno(), n, 0) if n else b""


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


def serve_metrics(metrics: FollowMetrics, port: int) -> None:
    start_http_server(port, registry=metrics.registry)
