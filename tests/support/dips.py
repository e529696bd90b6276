"""Calls with a chosen answer rate, for alert tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


def calls(
    tag: str,
    queue: str,
    start: datetime,
    answered: int,
    abandoned: int,
    spread: timedelta = timedelta(minutes=9),
) -> list[dict[str, Any]]:
    """`answered + abandoned` calls offered evenly over `spread` from `start`,
    answered after 5 s, or abandoned by the caller after 30 s (not a short
    abandon, so each counts in the answer rate)."""
    n = answered + abandoned
    # abandons spread through the span, so a window that has slid past the first
    # calls still sees about the same rate
    dropped = {(k * n) // abandoned for k in range(abandoned)} if abandoned else set()
    out: list[dict[str, Any]] = []
    for i in range(n):
        cid = f"{tag}-{i}"
        t0 = start + spread * i / n

        def ev(suffix: str, typ: str, at: datetime, cid: str = cid, **f: Any) -> dict[str, Any]:
            return {"event_id": f"{cid}-{suffix}", "type": typ, "occurred_at": at.isoformat(),
                    "call_id": cid, **f}  # fmt: skip

        out.append(ev("o", "call.offered", t0, queue_id=queue))
        if i not in dropped:
            agent = f"{tag}-agent{i % 4}"
            out.append(ev("a", "call.answered", t0 + timedelta(seconds=5), agent_id=agent))
            out.append(ev("e", "call.ended", t0 + timedelta(seconds=60), ended_by="agent"))
        else:
            out.append(ev("e", "call.ended", t0 + timedelta(seconds=30), ended_by="customer"))
    return out
