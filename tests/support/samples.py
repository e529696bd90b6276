"""Small histories for the abnormal-figures tests: of one figure (an agent's
usual calls in the trailing weeks, a period, a team around it), and as events
for the real pipeline."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from services.core.deviation import Sample

MONDAY = date(2026, 11, 30)


def weeks_of(talk_s: float, calls: int, weeks: int = 4) -> list[Sample]:
    """The same weekday's hours in each of the trailing weeks."""
    return [Sample(MONDAY - timedelta(weeks=w), talk_s * calls, calls) for w in range(1, weeks + 1)]


def period(talk_s: float, calls: int = 25) -> Sample:
    return Sample(MONDAY, talk_s * calls, calls)


def team_with(
    agent_talk_s: float, others: tuple[float, ...] = (195, 200, 205, 210)
) -> list[Sample]:
    return [period(agent_talk_s), *(period(t) for t in others)]


def answered_calls(
    agent: str, hour: datetime, talk_s: int, n: int, tag: str, first: int = 0
) -> list[dict[str, Any]]:
    """`n` calls of the billing queue answered by `agent` in `hour`, one every
    110 s (from the `first`th slot), each talked `talk_s` seconds and ended by
    the agent."""
    out: list[dict[str, Any]] = []
    for i in range(first, first + n):
        cid, t0 = f"qa-{tag}-{agent}-{i}", hour + timedelta(seconds=110 * i)
        out += [
            {"event_id": f"{cid}-o", "type": "call.offered", "call_id": cid,
             "queue_id": "billing", "occurred_at": t0.isoformat()},
            {"event_id": f"{cid}-a", "type": "call.answered", "call_id": cid, "agent_id": agent,
             "occurred_at": (t0 + timedelta(seconds=4)).isoformat()},
            {"event_id": f"{cid}-e", "type": "call.ended", "call_id": cid, "ended_by": "agent",
             "occurred_at": (t0 + timedelta(seconds=4 + talk_s)).isoformat()},
        ]  # fmt: skip
    return out
