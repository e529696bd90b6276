"""`callkpi asterisk import` end to end: the hand fixture through ingest, the
real broker, worker and Postgres, figures equal to what a person works out from
the file, and a second import that changes nothing."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import ROOT
from tests.support.stack import Stack, wait_until

HAND = Path(__file__).parent / "hand.queue_log"  # also read by test_queue_log.py

pytestmark = pytest.mark.slow
# The fixture's day (2026-11-02, Shanghai), moved in whole days to two days before
# the run: the clock times, hence every figure, stay the same, and the buckets are
# never older than the worker's retention (400 days), whatever the date.
DAY = datetime(2026, 11, 2, tzinfo=timezone(timedelta(hours=8)))
SHIFT = timedelta(days=max(0, (datetime.now(UTC) - DAY).days - 2))


def shifted(stamp: str) -> str:
    return (datetime.fromisoformat(stamp) + SHIFT).isoformat()


RANGE = {"from": shifted("2026-11-02T08:55:00+08:00"), "to": shifted("2026-11-02T09:20:00+08:00")}


@pytest.fixture(scope="module")
def hand_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand fixture with its epochs moved by SHIFT (other lines as they are)."""
    out = []
    for line in HAND.read_text().splitlines(keepends=True):
        head, sep, rest = line.partition("|")
        if sep and head.isdigit() and len(head) >= 9:
            line = f"{int(head) + int(SHIFT.total_seconds())}|{rest}"
        out.append(line)
    path: Path = tmp_path_factory.mktemp("hand") / "queue_log"
    path.write_text("".join(out))
    return path


def run_import(stack: Stack, path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "asterisk", "import", str(path), "--url", stack.url],
        cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def figures(stack: Stack, kind: str, ident: str) -> dict[str, Any]:
    r = stack.get(f"/v1/kpis/{kind}/{ident}", **RANGE)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_the_hand_fixture_gives_the_figures_worked_out_by_hand_and_a_second_import_changes_nothing(
    stack: Stack, hand_file: Path
) -> None:
    out = run_import(stack, hand_file)
    assert "lines read       34" in out
    assert "43 accepted, 0 rejected by ingest" in out
    assert "malformed lines  4" in out
    assert "line 31: CONNECT data1: not a number: 'soon'" in out
    assert "unknown event FOOBAR" in out

    def support() -> dict[str, Any] | None:
        r = stack.get("/v1/kpis/queue/support", **RANGE)  # 404 until the worker has it
        f: dict[str, Any] = r.json()
        done = r.status_code == 200 and (f["offered"], f["handled"], f["fcr_candidates"]) == (
            8,
            3,
            3,
        )
        return f if done else None  # both stages (calls, then FCR) have counted it

    q = wait_until(support, timeout=30)
    assert q, figures(stack, "queue", "support")
    # 8 entered support: c1, c6, c7 answered; c2 abandoned after 30 s, c3 after
    # 3 s (a short abandon, out of the rate); c4 timed out, c5 found it empty
    # (JOINEMPTY: blocked at entry), c8 left with a key: each a miss by default
    assert (q["answered"], q["abandoned"], q["short_abandoned"], q["timed_out"]) == (3, 2, 1, 1)
    assert (q["blocked_at_entry"], q["exited_by_key"], q["closed"]) == (1, 1, 0)
    assert q["answer_rate"] == pytest.approx(3 / 7)  # 3 / (3 + 2 − 1 + 1 + 1 + 1)
    # the calls that queued: waits 10, 30, 3, 60, 5, 20 (answered) and 5 (c8)
    assert q["awt_seconds"] == pytest.approx((10 + 30 + 3 + 60 + 5 + 20 + 5) / 7)
    assert q["asa_seconds"] == pytest.approx((10 + 5 + 20) / 3)  # the CONNECT hold times
    assert q["avg_talk_seconds"] == pytest.approx((120 + 60 + 90) / 3)  # the logged talk
    assert q["avg_acw_seconds"] == pytest.approx(15 / 3)  # WRAPUPSTART 15 on c7 only
    assert q["aht_seconds"] == pytest.approx((120 + 60 + 90 + 15) / 3)
    assert q["transfers"] == 1
    # c8 also entered sales, where 1002 answered it after 4 s and talked 40 s
    s = wait_until(lambda: (f := figures(stack, "queue", "sales"))["fcr_candidates"] and f, 30)
    assert (s["offered"], s["answered"], s["asa_seconds"], s["avg_talk_seconds"]) == (1, 1, 4, 40)

    a1002 = wait_until(lambda: (f := figures(stack, "agent", "1002"))["fcr_candidates"] and f, 30)
    a1001 = figures(stack, "agent", "1001")
    assert (a1001["presented"], a1001["answered"], a1001["rona"]) == (2, 1, 1)
    assert (a1002["answered"], a1002["avg_ring_seconds"]) == (2, pytest.approx((3 + 1) / 2))
    a1004 = figures(stack, "agent", "1004")
    # added 08:58:20, paused for lunch 09:05–09:15, removed 09:16:40
    assert a1004["not_ready_by_reason"] == {"lunch": 600.0}
    assert a1004["available_seconds"] == 400.0 + 100.0
    assert a1004["logged_in_seconds"] == 1100.0

    before = {k: figures(stack, *k) for k in (("queue", "support"), ("queue", "sales"),
                                              ("agent", "1002"), ("agent", "1004"))}  # fmt: skip
    again = run_import(stack, hand_file)
    assert "43 accepted" in again
    # give the worker time to (not) count them a second time: a marker call
    # posted after the second import is counted once it has read everything
    marker = [{"event_id": "aq-marker", "type": "call.offered", "call_id": "aq-marker",
               "queue_id": "aq-marker", "occurred_at": shifted("2026-11-02T09:30:00+08:00")}]  # fmt: skip
    assert stack.post(marker).status_code == 202
    assert wait_until(
        lambda: stack.get("/v1/kpis/queue/aq-marker",
                          **{"from": shifted("2026-11-02T09:30:00+08:00"),
                             "to": shifted("2026-11-02T09:31:00+08:00")}).status_code == 200,
        timeout=30,
    )  # fmt: skip
    after = {k: figures(stack, *k) for k in before}
    for f in (*before.values(), *after.values()):
        # what is true now (time in state, the pipeline's backlog) moves on; the
        # figures must not
        f.pop("live")
        f.pop("pipeline")
    moved = {k: {f: (v, after[k][f]) for f, v in b.items() if after[k][f] != v}
             for k, b in before.items()}  # fmt: skip
    assert moved == {k: {} for k in before}
