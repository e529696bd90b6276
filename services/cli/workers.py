"""`callkpi worker --processes N`: N worker processes on one host from one
command. The worker is GIL-bound at one core, so a host's other cores take more
partitions only as more processes; they share the partitions through the
consumer group exactly as workers on different hosts do (the guarantees are the
group's and Postgres's, not this supervisor's).

The supervisor starts the N workers (health on --port, --port+1, …), restarts
one that dies (after 1 s, doubling to 30 s while it keeps dying within a minute
of its start), and on SIGTERM or Ctrl-C stops them all and waits for them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger("callkpi.workers")

# A worker that dies again within this of starting is crashing, not unlucky:
# its restarts back off from 1 s, doubling, to at most 30 s.
STABLE_S = 60.0
BACKOFF_S = (1.0, 30.0)
# What a worker gets to stop cleanly (commit its batch, leave the group) before
# it is killed; a SIGKILL loses nothing either, it only costs a re-read.
STOP_TIMEOUT_S = 30.0
POLL_S = 0.2


@dataclass
class Slot:
    index: int
    command: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = BACKOFF_S[0] / 2  # doubled before each restart after a short life
    due: float = 0.0  # when a dead worker is started again

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command)
        self.started = time.monotonic()
        log.info("worker %d started (pid %d)", self.index, self.proc.pid)


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with {code}"


def supervise(processes: int, host: str, port: int) -> int:
    base = [sys.executable, "-m", "services.cli", "worker", "--host", host]
    slots = [Slot(i, [*base, "--port", str(port + i)]) for i in range(processes)]
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for s in slots:
        s.start()
    log.info("%d workers, health on http://%s:%d-%d/healthz", processes, host, port,
             port + processes - 1)  # fmt: skip
    while not stopping:
        now = time.monotonic()
        for s in slots:
            if s.proc is not None and (code := s.proc.poll()) is not None:
                # a short life means a crash loop: back off; a long one, start afresh
                stable = now - s.started > STABLE_S
                s.delay = BACKOFF_S[0] if stable else min(BACKOFF_S[1], s.delay * 2)
                s.due = now + s.delay
                s.proc = None
                log.warning(
                    "worker %d %s; starting it again in %.0f s (its partitions go to "
                    "the others meanwhile)", s.index, _exit_text(code), s.delay,
                )  # fmt: skip
            elif s.proc is None and now >= s.due:
                s.start()
        time.sleep(POLL_S)
    return _stop_all(slots)


def _stop_all(slots: list[Slot]) -> int:
    alive = [s.proc for s in slots if s.proc is not None and s.proc.poll() is None]
    for p in alive:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for p in alive:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker pid %d did not stop in %.0f s: killed", p.pid, STOP_TIMEOUT_S)
            p.kill()
            p.wait()
    log.info("workers stopped")
    return 0


def cpu_count() -> int:
    """The cores this process may use (a container's limit, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
