"""`callkpi simulate --out` then `callkpi replay`: a file round-trips into the figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.api.test_end_to_end import expected
from tests.conftest import EXAMPLE_CONFIG
from tests.stack import ROOT, Stack, wait_until

START = "2025-06-02T01:00:00+00:00"  # a stretch no other test uses


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", "--config", str(EXAMPLE_CONFIG), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_simulated_file_replayed_twice_gives_the_reference_figures_once(
    stack: Stack, tmp_path: Path
) -> None:
    out = tmp_path / "events.jsonl"
    made = cli("simulate", "--out", str(out), "--seed", "9", "--start", START, "--duration", "20m")
    assert made.returncode == 0, made.stderr
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(events) > 100
    with out.open("ab") as fh:
        fh.write(b"{broken line\n")
    for _ in range(2):
        run = cli("replay", str(out), "--url", stack.url, "--batch", "300")
        assert run.returncode == 1  # one line could not be sent, and it says which
        assert f"{out}:{len(events) + 1}: malformed JSON" in run.stderr
        assert f"replayed {len(events)} events, {len(events)} accepted, 1 malformed" in run.stderr
    want = expected(events)[("center", "all")]
    span = {"from": "2025-06-02T00:59:00Z", "to": "2025-06-02T02:00:00Z"}
    got = wait_until(
        lambda: (
            (r := stack.get("/v1/kpis/center/all", **span).json())["handled"] == want["handled"]
            and r
        ),
        timeout=30,
    )
    assert got, "figures never matched"
    for name in ("offered", "answered", "abandoned", "handled", "aht_seconds", "asa_seconds"):
        assert got[name] == want[name], name
