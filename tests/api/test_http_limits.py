"""Clients that trickle a request are disconnected; everyone else is served, and
a wallboard stream stays open as long as its client wants."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from services.devstack import EmbeddedBroker, EmbeddedPostgres, free_port, wait_http
from tests.support.databases import new_database, stack_env
from tests.support.stack import child


@pytest.fixture(scope="module")
def api(pg: EmbeddedPostgres, broker: EmbeddedBroker) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **stack_env(broker, new_database(pg), f"lim{os.getpid()}",
                                      CALLKPI_HTTP_HEAD_TIMEOUT_SECONDS="1",
                                      CALLKPI_HTTP_BODY_TIMEOUT_SECONDS="2")}  # fmt: skip
    proc = child("api-limits", ["api", "--with-ingest", "--port", str(port)], env).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/readyz", 60)
        yield url
    finally:
        proc.stop()


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass  # (nothing is sent to a head that never ends)
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_connections_that_trickle_their_request_head_are_closed_and_others_served(
    api: str,
) -> None:
    port = int(api.rsplit(":", 1)[1])
    slow = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        slow.append(s)
    assert httpx.get(f"{api}/healthz", timeout=5).status_code == 200
    try:
        assert all(closed_within(s, 10) for s in slow)
    finally:
        for s in slow:
            s.close()
    # a keep-alive connection is served again after its first response
    with httpx.Client(timeout=5) as client:
        assert client.get(f"{api}/healthz").status_code == 200
        time.sleep(0.5)
        assert client.get(f"{api}/healthz").status_code == 200


def test_a_body_that_does_not_arrive_in_time_is_408(api: str) -> None:
    port = int(api.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n[{")  # fmt: skip
        s.settimeout(10)
        answer = b""
        while chunk := s.recv(4096):  # until the server closes (connection: close)
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"http_body_timeout_seconds=2" in answer


def test_a_wallboard_stream_outlives_the_body_bound(api: str) -> None:
    lines = 0
    started = time.monotonic()
    with httpx.stream("GET", f"{api}/v1/stream", params={"entity": "center:all"},
                      timeout=10) as r:  # fmt: skip
        assert r.status_code == 200
        for _ in r.iter_lines():
            lines += 1
            if time.monotonic() - started > 4:  # twice the body bound
                break
    assert time.monotonic() - started > 4 and lines > 0
