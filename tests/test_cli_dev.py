"""`callkpi dev --simulate`: the one-command demo, exactly as `make run` starts it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from services.devstack import free_port
from tests.conftest import EXAMPLE_CONFIG
from tests.stack import ROOT, wait_until


def test_dev_simulate_shows_center_figures_within_a_minute_and_sigterm_stops_every_child(
    tmp_path: Path,
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "dev", "--config", str(EXAMPLE_CONFIG),
         "--port", str(port), "--simulate", "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    started = time.monotonic()
    url = f"http://127.0.0.1:{port}/v1/kpis/center/all?window=15m"

    def offered() -> int:
        try:
            return int(httpx.get(url, timeout=2).json()["offered"])
        except (httpx.HTTPError, KeyError, ValueError):
            return 0

    try:
        assert wait_until(lambda: offered() > 0, timeout=60, interval=1), "no figures after 60 s"
        log = f"(after {time.monotonic() - started:.0f} s)"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3, f"expected worker, simulator, broker, postgres {log}"
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
    assert "figures     http://127.0.0.1" in out
    assert "callkpi stopped." in out
    time.sleep(1)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left running: {[c.cmdline()[:3] for c in alive]}"
    # Postgres is daemonised by pg_ctl (not a child); a clean stop removes its pid file
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()
