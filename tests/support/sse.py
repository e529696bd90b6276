"""A Server-Sent Events reader for tests: frames as the browser's parser sees
them, read on a thread so a test can wait for one with a timeout."""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Frame:
    event: str
    data: Any
    id: str | None
    at: float  # time.monotonic() when it arrived


def parse(block: str) -> Frame | None:
    event, data, ident = "message", [], None
    for line in block.split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            ident = value
    if not data:
        return None
    return Frame(event, json.loads("\n".join(data)), ident, time.monotonic())


class Feed:
    def __init__(self, url: str, params: Any, headers: dict[str, str] | None = None) -> None:
        self.frames: queue.Queue[Frame] = queue.Queue()
        self.status: int | None = None
        self.body = ""
        self._ready = threading.Event()
        self._stop = False
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=None))
        self._thread = threading.Thread(
            target=self._read, args=(url, params, headers or {}), daemon=True
        )
        self._thread.start()
        self._ready.wait(30)

    def _read(self, url: str, params: Any, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, params=params, headers=headers) as r:
                self.status = r.status_code
                if r.status_code != 200:
                    self.body = r.read().decode()
                    self._ready.set()
                    return
                self._ready.set()
                buf = ""
                for chunk in r.iter_text():
                    buf += chunk.replace("\r\n", "\n")
                    while "\n\n" in buf:
                        block, buf = buf.split("\n\n", 1)
                        frame = parse(block)
                        if frame is not None:
                            self.frames.put(frame)
                    if self._stop:
                        return
        except httpx.HTTPError:
            pass
        finally:
            self._ready.set()

    def next(self, event: str | None = None, timeout: float = 10, where: Any = None) -> Frame:
        """The next frame of `event` (for which `where(frame)` holds); others are
        skipped. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {event or 'frame'} within {timeout}s")
            try:
                frame = self.frames.get(timeout=left)
            except queue.Empty:
                continue
            if (event is None or frame.event == event) and (where is None or where(frame)):
                return frame

    def close(self) -> None:
        self._stop = True
        self._client.close()
        self._thread.join(0.5)  # a blocked read ends at the next heartbeat

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
