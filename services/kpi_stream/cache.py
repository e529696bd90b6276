"""The worker's write-through caches: recently used call states, agent timelines
and FCR customers, so a batch reads from Postgres only what it has not seen. They
are dropped whenever what they hold may be stale (processor.py says when)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any


class Lru(OrderedDict[str, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: str, value: Any) -> None:
        if self.size <= 0:
            return
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def split_cached(
    keys: Iterable[str], *caches: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """(values found in the first cache that has them, keys to fetch from Postgres)."""
    found: dict[str, Any] = {}
    missing: list[str] = []
    for key in keys:
        for cache in caches:
            value = cache.get(key)
            if value is not None:
                found[key] = value
                break
        else:
            missing.append(key)
    return found, missing
