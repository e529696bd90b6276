"""The hub's bookkeeping without a database: coalescing, change detection and
resume points."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncEngine

from services.api.stream import IDLE_GRACE_S, Client, Hub
from services.api.tiles import ALERTS_KEY
from services.core.settings import Settings


def hub() -> Hub:
    return Hub(Settings(), cast(AsyncEngine, None))


def tile(ident: str, n: int) -> dict[str, Any]:
    return {"kind": "team", "id": ident, "live": {"in_queue": n}}


def watch(h: Hub, *keys: tuple[str, str]) -> Client:
    client = Client(frozenset(keys))
    h.clients.add(client)
    for k in keys:
        h._watchers[k] = h._watchers.get(k, 0) + 1
    return client


def test_a_client_that_does_not_read_holds_one_update_per_entity_the_latest() -> None:
    h = hub()
    slow = watch(h, ("team", "a"), ("team", "b"))
    for n in range(10_000):
        h._publish(("team", "a"), tile("a", n))
        h._publish(("team", "b"), tile("b", n))
        h._publish(("team", "c"), tile("c", n))  # nobody watches c
    assert len(slow.pending) == 2
    frames = slow.take().split(b"\n\n")
    assert b'"in_queue":9999' in frames[0] and b'"in_queue":9999' in frames[1]
    assert slow.pending == {} and not slow.wake.is_set()


def test_an_unchanged_tile_is_not_sent_again() -> None:
    h = hub()
    c = watch(h, ("team", "a"))
    h._publish(("team", "a"), tile("a", 1))
    seq = h.seq
    c.take()
    h._publish(("team", "a"), tile("a", 1))
    assert h.seq == seq and c.pending == {}
    h._publish(("team", "a"), tile("a", 2))
    assert h.seq == seq + 1 and list(c.pending) == [("team", "a")]


def test_resume_points_are_honoured_only_for_this_process_and_past_ids() -> None:
    h = hub()
    watch(h, ("team", "a"))
    for n in range(5):
        h._publish(("team", "a"), tile("a", n))
    assert h._resume_point(f"{h.epoch}-3") == 3
    assert h._resume_point(f"{h.epoch}-5") == 5
    assert h._resume_point(f"{h.epoch}-6") is None  # from the future: not ours
    assert h._resume_point("0badc0de-3") is None  # another process
    assert h._resume_point("garbage") is None
    assert h._resume_point(None) is None


async def test_a_tile_nobody_watches_is_kept_for_the_grace_period_then_forgotten() -> None:
    h = hub()
    a = watch(h, ("team", "a"), ALERTS_KEY)
    b = watch(h, ("team", "a"), ALERTS_KEY)
    h._publish(("team", "a"), tile("a", 1))
    h.unsubscribe(a)
    h.unsubscribe(b)
    left = asyncio.get_running_loop().time()
    # a page reconnecting within the grace resumes from a tile still kept current
    h._expire(left + IDLE_GRACE_S - 1)
    assert ("team", "a") in h.latest and ("team", "a") in h._watchers
    # after it, a resume must not trust a tile nobody kept up to date
    h._expire(left + IDLE_GRACE_S)
    assert ("team", "a") not in h.latest and ("team", "a") not in h._watchers
    assert h.clients == set()
