"""`callkpi simulate --out` then `callkpi replay`: a file round-trips into the figures."""

from __future__ import annotations

from pathlib import Path

import orjson

from services.devstack import free_port
from tests.support.cli import cli
from tests.support.simulated import expected
from tests.support.stack import Stack, wait_until

START = "2025-06-02T01:00:00+00:00"  # a stretch no other test uses


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


def test_replay_that_gives_up_says_what_was_confirmed_and_how_to_resume(
    stack: Stack, tmp_path: Path
) -> None:
    out = tmp_path / "events.jsonl"
    made = cli("simulate", "--out", str(out), "--seed", "10", "--start", "2025-06-03T01:00:00+00:00",
               "--duration", "10m")  # fmt: skip
    assert made.returncode == 0, made.stderr
    lines = out.read_bytes().splitlines()
    dead = f"http://127.0.0.1:{free_port()}"  # an API that is down
    run = cli("replay", str(out), "--url", dead, "--batch", "100", "--patience", "1")
    assert run.returncode == 3, run.stderr
    assert "stopped: ingest kept failing for" in run.stderr
    assert "confirmed by ingest: 0 events accepted, 0 refused" in run.stderr
    assert f"continue with: callkpi replay {out} --resume 1" in run.stderr
    assert "Traceback" not in run.stderr and "never retrieved" not in run.stderr, run.stderr
    # resuming part way posts the lines from there on, and only those
    start = len(lines) // 2
    again = cli("replay", str(out), "--url", stack.url, "--resume", str(start))
    assert again.returncode == 0, again.stderr
    sent = len(lines) - start + 1
    assert f"replayed {sent} events, {sent} accepted" in again.stderr


def test_asterisk_import_that_gives_up_prints_the_resume_command(tmp_path: Path) -> None:
    log = tmp_path / "queue_log"
    log.write_text(
        "1733000000|1733000000.1|billing|NONE|ENTERQUEUE||13800000001|1\n"
        "1733000005|1733000000.1|billing|SIP/1001|CONNECT|5|1733000000.2|2\n"
        "1733000065|1733000000.1|billing|SIP/1001|COMPLETECALLER|5|60|1\n"
    )
    dead = f"http://127.0.0.1:{free_port()}"
    run = cli("asterisk", "import", str(log), "--url", dead, "--patience", "1")
    assert run.returncode == 3, run.stderr
    assert f"continue with: callkpi asterisk import {log} --resume 0" in run.stderr
    assert "Traceback" not in run.stderr, run.stderr
