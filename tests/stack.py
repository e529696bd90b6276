"""Runs the real services as subprocesses against the session's broker and Postgres."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from services.devstack import free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.name = name
        self.args = args
        self.env = env
        self.log = ARTIFACTS / f"{name}.log"
        self.p: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            self.p = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *self.args],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(sig)
            self.p.wait(30)

    def stop(self, grace_s: float = 20) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `grace_s` (the
        process log says why it hung)."""
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(grace_s)
            except subprocess.TimeoutExpired:
                with self.log.open("a") as out:
                    out.write(f"--- {self.name}: no exit {grace_s:.0f} s after SIGTERM; SIGKILL\n")
                self.p.kill()
                self.p.wait(10)


class Stack:
    """A worker and an API (with ingest), each its own process."""

    def __init__(self, env: dict[str, str], token: str | None = None, logs: str = "") -> None:
        """`logs`: a prefix for the processes' log files (test-artifacts/<logs>api.log)."""
        self.env = {**os.environ, **env}
        # sent on every request of the helpers below (a stack with auth on)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.api_port = free_port()
        self.worker_port = free_port()
        self.api = Proc(f"{logs}api", ["api", "--with-ingest", "--port", str(self.api_port)],
                        self.env)  # fmt: skip
        self.worker = Proc(f"{logs}worker", ["worker", "--port", str(self.worker_port)], self.env)
        self.url = f"http://127.0.0.1:{self.api_port}"

    def start(self) -> Stack:
        self.api.start()
        self.worker.start()
        wait_http(f"{self.url}/readyz", 60)
        self.wait_worker_ready()
        return self

    def wait_worker_ready(self, timeout: float = 90) -> None:
        wait_http(f"http://127.0.0.1:{self.worker_port}/readyz", timeout)

    def restart_worker(self) -> None:
        self.worker = Proc(self.worker.name, self.worker.args, self.env).start()
        self.wait_worker_ready()

    def restart_api(self) -> None:
        """SIGKILL the API process and start a new one on the same port."""
        self.api.kill()
        self.api = Proc(self.api.name, self.api.args, self.env).start()
        wait_http(f"{self.url}/readyz", 60)

    def stop(self) -> None:
        self.worker.stop()
        self.api.stop()

    def post(self, events: list[dict[str, Any]]) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/events", json=events, headers=self.headers, timeout=30)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, headers=self.headers, timeout=30)

    def get_with(self, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, headers={**self.headers, **headers},
                         timeout=30)  # fmt: skip

    def post_json(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers=self.headers, timeout=60)


def wait_until(check: Any, timeout: float, interval: float = 0.25) -> Any:
    """Poll until check() returns a truthy value; return the last value either way."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value
