"""What is true *now*: agents by state, calls waiting, and the open part of each
agent's current state (which the minute buckets never hold: a state is stored
only once the next one closes it, services/core/agents.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.agents import NO_REASON, open_overlap
from services.core.kpi import AGENT_STATES
from services.core.settings import UNASSIGNED_TEAM, Settings
from services.core.timewin import epoch_us, iso
from services.readmodel import queries

LIVE_STATES = (*AGENT_STATES, "logged_out")


@dataclass(frozen=True, slots=True)
class Live:
    now: datetime
    agents: list[tuple[str, str, str | None, int]]  # (agent, state, reason, since µs)
    waiting: list[tuple[str, int, datetime]]  # (queue, n, oldest arrival)
    team_of_agent: dict[str, str]
    team_of_queue: dict[str, str]
    tz: ZoneInfo
    cap_us: int  # max_state_hours: an older open state is a lost event, not work

    def _stale(self, since: int) -> bool:
        return epoch_us(self.now) - since > self.cap_us

    def _agents_of(self, kind: str, ident: str) -> list[tuple[str, str, str | None, int]]:
        if kind == "center":
            return self.agents
        if kind == "team":
            return [
                a for a in self.agents if self.team_of_agent.get(a[0], UNASSIGNED_TEAM) == ident
            ]
        if kind == "agent":
            return [a for a in self.agents if a[0] == ident]
        return []

    def add_open_time(
        self,
        kind: str,
        ident: str,
        counters: dict[str, int],
        reasons: dict[str, int],
        start: datetime,
        end: datetime,
    ) -> None:
        """Add the open state of each of the entity's agents, up to now, inside
        [start, end) (in place). Past ranges before the state began get nothing."""
        now_us, s_us, e_us = epoch_us(self.now), epoch_us(start), epoch_us(end)
        for _agent, state, reason, since in self._agents_of(kind, ident):
            if state == "logged_out":
                continue
            us = open_overlap(since, now_us, s_us, e_us, self.cap_us)
            if not us:
                continue
            counters["logged_in_us"] += us
            counters[f"{state}_us"] += us
            if state == "not_ready":
                r = reason or NO_REASON
                reasons[r] = reasons.get(r, 0) + us

    def block(self, kind: str, ident: str) -> dict[str, Any]:
        """The `live` block of a response."""
        if kind == "agent":
            mine = self._agents_of(kind, ident)
            if not mine:
                return {
                    "state": None,
                    "reason": None,
                    "since": None,
                    "seconds_in_state": None,
                    "stale": False,
                }
            _a, state, reason, since = mine[0]
            return {
                "state": state,
                "reason": reason,
                "since": iso(datetime.fromtimestamp(since / 1_000_000, self.tz), self.tz),
                "seconds_in_state": max(0, epoch_us(self.now) - since) / 1_000_000,
                "stale": state != "logged_out" and self._stale(since),
            }
        if kind == "center":
            queues = self.waiting
        elif kind == "team":
            queues = [w for w in self.waiting if self.team_of_queue.get(w[0]) == ident]
            if ident == UNASSIGNED_TEAM:
                queues = [w for w in self.waiting if w[0] not in self.team_of_queue]
        else:
            queues = [w for w in self.waiting if w[0] == ident]
        oldest = min((w[2] for w in queues), default=None)
        out: dict[str, Any] = {
            "in_queue": sum(w[1] for w in queues),
            "longest_wait_seconds": (
                max(0.0, (self.now - oldest).total_seconds()) if oldest is not None else None
            ),
        }
        if kind != "queue":
            counts = dict.fromkeys(LIVE_STATES, 0)
            for _a, state, _r, since in self._agents_of(kind, ident):
                counts["logged_out" if self._stale(since) else state] += 1
            out["agents"] = counts
        return out


async def load(conn: AsyncConnection, settings: Settings, now: datetime) -> Live:
    return Live(
        now=now,
        agents=await queries.agent_states(conn),
        waiting=await queries.waiting_calls(conn, settings.waiting_call_max_age_seconds),
        team_of_agent=settings.team_of_agent,
        team_of_queue=settings.team_of_queue,
        tz=settings.tz,
        cap_us=settings.kpi.max_state_us,
    )
