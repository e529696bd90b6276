"""`callkpi asterisk follow` end to end: a live queue_log that grows, is rotated
by rename and by copytruncate, with the follower SIGKILLed in the middle and
restarted, and ingest stopped for a while: every call is counted exactly once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import ARTIFACTS
from tests.support.stack import Stack, child, wait_until

pytestmark = pytest.mark.slow
T0 = 1793667600  # 2026-11-03 09:00:00 +08:00
RANGE = {"from": "2026-11-03T09:00:00+08:00", "to": "2026-11-03T11:00:00+08:00"}


def call_lines(i: int) -> str:
    """Call i on queue `fq`: every third abandoned after 20 s, the rest answered
    after 3 s and talked 30 s (by agent 20xx)."""
    t, cid = T0 + 10 * i, f"{T0 + 10 * i}.{i}"
    out = [f"{t}|{cid}|fq||ENTERQUEUE||1390000{i:04d}|1"]
    if i % 3 == 0:
        out.append(f"{t + 20}|{cid}|fq|NONE|ABANDON|1|1|20")
    else:
        agent = f"PJSIP/20{i % 5:02d}"
        out += [f"{t + 3}|{cid}|fq|{agent}|CONNECT|3|{cid}9|1",
                f"{t + 33}|{cid}|fq|{agent}|COMPLETECALLER|3|30|1"]  # fmt: skip
    return "".join(line + "\n" for line in out)


def append(path: Path, calls: range) -> None:
    with path.open("a") as fh:
        fh.write("".join(call_lines(i) for i in calls))


class Follower:
    def __init__(self, stack: Stack, log: Path, checkpoint: Path) -> None:
        self.args = ["asterisk", "follow", str(log), "--checkpoint", str(checkpoint),
                     "--url", stack.url, "--poll", "0.05"]  # fmt: skip
        self.env = stack.env
        (ARTIFACTS / "follow.log").unlink(missing_ok=True)  # this run's lines only
        self.proc = child("follow", self.args, self.env).start()

    def restart(self) -> None:
        self.proc = child("follow", self.args, self.env).start()


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield tmp_path / "queue_log", tmp_path / "follow.json"


def caught_up(log: Path, checkpoint: Path) -> bool:
    try:
        cp = json.loads(checkpoint.read_text())
    except (FileNotFoundError, ValueError):
        return False
    return bool(cp["inode"] == os.stat(log).st_ino and cp["offset"] == log.stat().st_size)


def queue_figures(stack: Stack) -> dict[str, Any] | None:
    r = stack.get("/v1/kpis/queue/fq", **RANGE)
    return r.json() if r.status_code == 200 else None


def test_rotation_restart_and_an_ingest_outage_lose_nothing_and_count_nothing_twice(
    stack: Stack, files: tuple[Path, Path]
) -> None:
    log, checkpoint = files
    append(log, range(0, 20))
    follower = Follower(stack, log, checkpoint)
    try:
        assert wait_until(lambda: caught_up(log, checkpoint), timeout=30)

        # rotation by rename: lines written just before it are read from the old
        # file, then the new file from its start
        append(log, range(20, 30))
        log.rename(log.with_name("queue_log.1"))
        append(log, range(30, 40))
        assert wait_until(lambda: caught_up(log, checkpoint), timeout=30)

        # SIGKILL while it reads; a restart resumes from its checkpoint
        append(log, range(40, 50))
        follower.proc.kill(signal.SIGKILL)
        append(log, range(50, 60))
        follower.restart()
        assert wait_until(lambda: caught_up(log, checkpoint), timeout=30)

        # copytruncate: logrotate copies the file away and empties it in place
        shutil.copy(log, log.with_name("queue_log.2"))
        with log.open("r+") as fh:
            fh.truncate(0)
        append(log, range(60, 70))
        assert wait_until(lambda: caught_up(log, checkpoint), timeout=30)

        # ingest down: lines wait in the file (nothing lost), sent once it is back
        stack.api.kill(signal.SIGKILL)
        append(log, range(70, 80))
        time.sleep(1.5)
        assert not caught_up(log, checkpoint)
        stack.restart_api()
        assert wait_until(lambda: caught_up(log, checkpoint), timeout=60)
    finally:
        follower.proc.stop()

    answered = sum(1 for i in range(80) if i % 3)
    q = wait_until(lambda: (f := queue_figures(stack)) and f["offered"] == 80 and
                   f["answered"] + f["abandoned"] == 80 and f, timeout=60)  # fmt: skip
    assert q, queue_figures(stack)
    assert (q["answered"], q["abandoned"]) == (answered, 80 - answered)
    assert q["asa_seconds"] == 3 and q["avg_talk_seconds"] == 30
    # the log says what happened
    text = (follow_log := Path(follower.proc.log)).read_text()
    assert "rotated (rename)" in text and "truncated (copytruncate)" in text
    assert "resuming" in text and "retrying" in text, follow_log
