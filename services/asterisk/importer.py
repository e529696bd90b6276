"""`callkpi asterisk import`: queue_log files (history, in any order, .gz or CSV
exports) to ingest, in time order within a window, with progress and a resume
point (docs/asterisk.md)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import heapq
import logging
import sys
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo

from services.asterisk.queue_log import Line, Malformed, Mapper, Stats, read_lines
from services.ingest.client import PATIENCE_S, Sender

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
    # Requests in flight while the next batch is mapped: with one, ingest sat idle
    # whenever a batch was mapped slower than the previous one was checked (79-81%
    # of ingest's ceiling); with two, 86-88%; with three and the mapping a batch
    # ahead in a thread, 91-97% (docs/asterisk.md#throughput)
    sender = Sender(client, travelling=3, patience_s=patience_s)
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

    def batches() -> Generator[tuple[list[dict[str, Any]], int, int], None, None]:
        """(events, mark, bytes read) of each batch of BATCH_LINES lines."""
        nonlocal events, since_send, mark
        before = 0  # bytes of the files already read
        for path in ordered:
            reader = _Reader(path)
            try:
                for item in read_lines(reader, tz):
                    take(reorder.push(item), path.name)
                    if since_send >= BATCH_LINES:
                        yield events, max(mark, resume), before + reader.done
                        events, since_send, mark = [], 0, mapped
                        mapper.forget_finished()
            finally:
                reader.close()
            before += path.stat().st_size
        take(reorder.drain(), ordered[-1].name if ordered else "")
        yield events, max(mark, resume), total

    # Read and mapped in a thread, one batch ahead: mapping a batch takes tens of
    # milliseconds of CPU, and on the event loop it held up the requests in flight
    # meanwhile (their bodies' last bytes, ingest's answers).
    made = batches()
    ahead = asyncio.ensure_future(asyncio.to_thread(next, made, None))
    try:
        while (batch := await ahead) is not None:
            ahead = asyncio.ensure_future(asyncio.to_thread(next, made, None))
            await sender.send(batch[0], batch[1])
            now = time.monotonic()
            if progress is not None and now - last_print >= 0.5:
                last_print = now
                _progress(progress, mapper.stats.lines, batch[2], total, now - started)
    finally:
        with contextlib.suppress(BaseException):
            await ahead
        made.close()
    await sender.flush()
    seconds = time.monotonic() - started
    if progress is not None:
        _progress(progress, mapper.stats.lines, total, total, seconds)
        print(file=progress)
    return Outcome(mapper.stats, sender.accepted, sender.rejected, seconds)
