"""`callkpi simulate --rush AGENT`: a roster agent rushes its calls (live, and the
history's last days); any other name is refused before anything is simulated."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import cli

START = "2025-06-02T01:00:00+00:00"


def test_rush_names_a_roster_agent_or_is_refused_naming_it(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    refused = cli("simulate", "--out", str(out), "--start", START, "--duration", "10m",
                  "--rush", "b00", "--rush", "nobody")  # fmt: skip
    assert refused.returncode != 0
    assert "--rush: 'nobody' is not an agent of the roster" in refused.stderr
    assert not out.exists()
    made = cli("simulate", "--out", str(out), "--start", START, "--duration", "10m",
               "--rush", "b00")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert f"rushing its calls from {START[:-6]}+00:00 on: b00 (talk at 60% of usual)" in (
        made.stderr
    )
    assert out.stat().st_size > 0
