"""The real services as child processes (services/devstack.py's Child) against
the session's broker and Postgres, with the HTTP helpers the tests use."""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

import httpx

from services.devstack import Child, free_port
from services.devstack import Stack as DevStack
from tests.support.databases import ARTIFACTS, ROOT


def child(name: str, args: list[str], env: dict[str, str]) -> Child:
    """`callkpi <args>` as a child process, logged to test-artifacts/<name>.log."""
    return Child(name, args, env, ARTIFACTS / f"{name}.log", cwd=ROOT)


class Stack:
    """A worker and an API (with ingest), each its own process, run by the dev
    stack (services/devstack.py) against the session's broker and Postgres."""

    def __init__(self, env: dict[str, str], token: str | None = None, logs: str = "") -> None:
        """`logs`: a prefix for the processes' log files (test-artifacts/<logs>api.log)."""
        self.services = DevStack(ARTIFACTS, {**os.environ, **env}, cwd=ROOT)
        self.env = self.services.env
        self.logs = logs
        # sent on every request of the helpers below (a stack with auth on)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.api_port = free_port()
        self.worker_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"

        self._worker: Child | None = None

    def start(self, *, worker: bool = True) -> Stack:
        """Start the API (and, `worker`, the worker) and wait until ready; without
        the worker, restart_worker() starts it later."""
        self.api = self.services.spawn(
            f"{self.logs}api", "api", "--with-ingest", "--port", str(self.api_port)
        )
        self.wait_api_ready()
        if worker:
            self.restart_worker()
        return self

    def wait_api_ready(self, timeout: float = 60) -> None:
        self.services.wait_ready(f"{self.url}/readyz", timeout, self.api)

    def wait_worker_ready(self, timeout: float = 90) -> None:
        url = f"http://127.0.0.1:{self.worker_port}/readyz"
        self.services.wait_ready(url, timeout, self._worker)

    def restart_worker(self) -> None:
        """Start the worker: the first time, or again after a kill or a stop."""
        if self._worker is None:
            self._worker = self.services.spawn(
                f"{self.logs}worker", "worker", "--port", str(self.worker_port)
            )
        else:
            self._worker = self.services.restart(self._worker)
        self.wait_worker_ready()

    @property
    def worker(self) -> Child:
        if self._worker is None:
            raise RuntimeError("the worker is not started: start() or restart_worker()")
        return self._worker

    def restart_api(self, *, kill: bool = True) -> None:
        """SIGKILL the API process (unless it is gone already) and start a new one
        on the same port."""
        if kill:
            self.api.kill()
        self.api = self.services.restart(self.api)
        self.wait_api_ready()

    def stop(self) -> None:
        self.services.stop()

    def post(self, events: list[dict[str, Any]]) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/events", json=events, headers=self.headers, timeout=30)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, headers=self.headers, timeout=30)

    def get_with(self, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, headers={**self.headers, **headers},
                         timeout=30)  # fmt: skip

    def post_json(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers=self.headers, timeout=60)


def events_processed(stack: Stack) -> float:
    """Events the workers committed, as the API's /metrics says."""
    for line in stack.get("/metrics").text.splitlines():
        if line.startswith("callkpi_events_processed_total"):
            return float(line.split()[-1])
    raise AssertionError("callkpi_events_processed_total missing from /metrics")


def wait_until(check: Any, timeout: float, interval: float = 0.25) -> Any:
    """Poll until check() returns a truthy value; return the last value either way."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value


def post_and_wait(
    stack: Stack,
    events: list[dict[str, Any]],
    queue: str,
    span: tuple[datetime, datetime] | None = None,
    *,
    live: dict[str, int] | None = None,
    **want: int,
) -> dict[str, Any]:
    """Post `events` (every one accepted), then wait until the queue's figures
    over `span` (its minutes; default the live 15 minutes) show `want`, and its
    `live` block (what is true now) shows `live`: the worker has committed them.
    Returns that body."""
    for i in range(0, len(events), 1000):
        r = stack.post(events[i : i + 1000])
        assert r.status_code == 202, r.text
        assert r.json()["rejected"] == []
    if span is None:
        query = {"window": "15m"}
    else:
        query = {"from": _minute(span[0]), "to": _minute(span[1])}

    def shown() -> dict[str, Any] | None:
        r = stack.get(f"/v1/kpis/queue/{queue}", **query)
        if r.status_code != 200:
            return None
        body: dict[str, Any] = r.json()
        shows = all(body[k] == v for k, v in want.items())
        return (
            body if shows and all(body["live"][k] == v for k, v in (live or {}).items()) else None
        )

    got = wait_until(shown, timeout=60)
    assert got, stack.get(f"/v1/kpis/queue/{queue}", **query).text
    return got  # type: ignore[no-any-return]


def _minute(t: datetime) -> str:
    return t.replace(second=0, microsecond=0).isoformat()
