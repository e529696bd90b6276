"""`callkpi asterisk import` and `callkpi asterisk follow`: queue_log lines to
ingest (docs/asterisk.md)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import heapq
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from services.asterisk.queue_log import Line, Malformed, Mapper, Stats, parse_line, read_lines
from services.ingest.client import PATIENCE_S, Sender, log_rejections, post_events

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("callkpi.asterisk")

# Lines per POST: large enough that HTTP costs little per line, small enough
# that a retry re-sends little.
BATCH_LINES = 2000


class Reorder:
    """Emits lines in time order within a window: queue_log is nearly ordered,
    but merged files and database exports are not. A line is held until a line
    `window_s` newer has been read (or the input ends); ties keep file order."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._heap: list[tuple[float, int, Line]] = []
        self._seq = 0
        self._newest = float("-inf")

    def push(self, item: Line | Malformed) -> list[Line | Malformed]:
        if isinstance(item, Malformed):
            return [item]  # reported in its place, not held
        self._seq += 1
        heapq.heappush(self._heap, (item.at, self._seq, item))
        self._newest = max(self._newest, item.at)
        out: list[Line | Malformed] = []
        while self._heap and self._heap[0][0] <= self._newest - self.window_s:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def drain(self) -> list[Line | Malformed]:
        return [heapq.heappop(self._heap)[2] for _ in range(len(self._heap))]


class _Reader:
    """Decoded lines of a file (plain or .gz), and how many of its bytes on
    disk have been read (for progress)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._raw = path.open("rb")
        gz = path.suffix == ".gz"
        self._fh = cast(IO[bytes], gzip.GzipFile(fileobj=self._raw) if gz else self._raw)
        self._plain = self._fh is self._raw
        self._read = 0

    @property
    def done(self) -> int:
        return self._read if self._plain else self._raw.tell()

    def __iter__(self) -> Iterator[str]:
        for raw in self._fh:
            self._read += len(raw)
            yield raw.decode("utf-8", errors="replace")

    def close(self) -> None:
        self._fh.close()
        self._raw.close()


def first_time(path: Path, tz: ZoneInfo) -> float:
    """The time of a file's first readable line (orders rotated files)."""
    reader = _Reader(path)
    try:
        for item in read_lines(reader, tz):
            if isinstance(item, Line):
                return item.at
    finally:
        reader.close()
    return float("inf")


@dataclass
class Outcome:
    stats: Stats
    accepted: int
    rejected: int
    seconds: float

    def summary(self) -> str:
        s = self.stats
        rate = s.lines / max(self.seconds, 1e-9)
        out = [
            f"lines read       {s.lines:,} in {self.seconds:.1f} s ({rate:,.0f} lines/s)",
            f"events sent      {s.events:,}: {self.accepted:,} accepted, "
            f"{self.rejected:,} rejected by ingest",
            f"lines skipped    {sum(s.skipped.values()):,}",
            *(f"  {n:>12,}  {reason}" for reason, n in s.skipped.most_common()),
            f"malformed lines  {s.malformed_count:,}",
            *(f"  {what}" for what in s.malformed[:20]),
        ]
        if s.malformed_count > 20:
            out.append(f"  … and {s.malformed_count - 20:,} more")
        return "\n".join(out)


def _progress(out: IO[str], lines: int, done: int, total: int, seconds: float) -> None:
    rate = lines / max(seconds, 1e-9)
    eta = (total - done) * seconds / done if done else 0.0
    print(f"\r{done * 100 // max(total, 1):3d}%  {lines:,} lines  {rate:,.0f} lines/s  "
          f"ETA {eta:,.0f} s   ", end="", file=out, flush=True)  # fmt: skip


async def import_files(
    paths: list[Path],
    client: httpx.AsyncClient,
    mapper: Mapper,
    tz: ZoneInfo,
    reorder_s: float,
    progress: IO[str] | None = sys.stderr,
    resume: int = 0,
    patience_s: float = PATIENCE_S,
) -> Outcome:
    """Every line of `paths` to ingest, oldest file first whatever the order
    given (rotated files: queue_log.2.gz, queue_log.1, queue_log), in batches.

    Each batch's mark is the number of lines mapped before it. When ingest keeps
    failing, IngestStopped carries the mark to resume from; with `resume=N` every
    line is read and mapped again (the mapper needs the calls in progress; event
    ids are digests of the lines, so the events come out the same) but only the
    events of lines N+1 onwards are sent."""
    ordered = sorted(paths, key=lambda p: first_time(p, tz))
    total = sum(p.stat().st_size for p in ordered)
    started = time.monotonic()
    last_print = 0.0
    before = 0  # bytes of the files already read
    sender = Sender(client, patience_s=patience_s)  # a request in flight while mapping
    reorder = Reorder(reorder_s)
    events: list[dict[str, Any]] = []
    since_send = 0
    mapped = 0  # lines fed to the mapper so far
    mark = 0  # lines mapped before the batch being built

    def take(ready: list[Line | Malformed], name: str) -> None:
        nonlocal events, since_send, mapped
        mapper.source = name
        for item in ready:
            out = mapper.feed(item)
            mapped += 1
            if mapped > resume:
                events += out
            since_send += 1

    for path in ordered:
        reader = _Reader(path)
        try:
            for item in read_lines(reader, tz):
                take(reorder.push(item), path.name)
                if since_send >= BATCH_LINES:
                    await sender.send(events, max(mark, resume))
                    events, since_send, mark = [], 0, mapped
                    mapper.forget_finished()
                    now = time.monotonic()
                    if progress is not None and now - last_print >= 0.5:
                        last_print = now
                        done = before + reader.done
                        _progress(progress, mapper.stats.lines, done, total, now - started)
        finally:
            reader.close()
        before += path.stat().st_size
    take(reorder.drain(), ordered[-1].name if ordered else "")
    await sender.send(events, max(mark, resume))
    await sender.flush()
    seconds = time.monotonic() - started
    if progress is not None:
        _progress(progress, mapper.stats.lines, total, total, seconds)
        print(file=progress)
    return Outcome(mapper.stats, sender.accepted, sender.rejected, seconds)


# --- follow ---------------------------------------------------------------------
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
