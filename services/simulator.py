"""A simulated call center, as a discrete-event simulation.

Poisson arrivals with a daily profile (peaks mid-morning and mid-afternoon), per
queue; agents of the queue's team take calls first-come first-served; callers
give up after an exponential patience (some within seconds: short abandons);
calls that wait too long are ended by the system; rings can go unanswered
(RONA) and the call goes back to the queue; holds, transfers, wrap-up, repeat
callers (for FCR), dispositions, surveys and agent state changes.

Every event passes through one time-ordered heap, so the output is ordered by
`occurred_at`. The same `seed` and `start` give the same events and ids.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.core.erlang import required_agents
from services.core.schedules import Segment
from services.core.settings import Team

# Share of the peak arrival rate by local hour. A 24/7 hotline: quiet at night,
# peaks 09-11 and 14-16, the shape the seeds' centers staff against.
DAILY_PROFILE = (
    0.30, 0.30, 0.30, 0.30, 0.30, 0.30, 0.35, 0.50, 0.75, 1.00, 1.00, 0.90,
    0.70, 0.80, 0.95, 1.00, 0.90, 0.75, 0.60, 0.50, 0.45, 0.40, 0.35, 0.30,
)  # fmt: skip


@dataclass
class SimConfig:
    seed: int = 1
    start: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration: timedelta = timedelta(hours=1)
    timezone: str = "UTC"
    calls_per_hour: float = 500.0  # center-wide, at peak
    mean_patience_s: float = 90.0
    short_abandon_share: float = 0.15  # callers who hang up within seconds
    max_wait_s: float = 300.0  # then the system ends the call
    mean_talk_s: float = 180.0
    rona_prob: float = 0.04
    hold_prob: float = 0.20
    transfer_prob: float = 0.04
    repeat_prob: float = 0.12
    resolved_prob: float = 0.85
    survey_prob: float = 0.35
    sale_prob: float = 0.06
    # rare, as the seeds' −3 points per complaint assumes: ~2 a month per agent in `make run`
    complaint_prob: float = 0.002
    break_prob: float = 0.05  # after a call, agent takes a not-ready break
    customers: int = 20_000
    # (offset from start, length): in that span each team keeps on the phones only
    # `understaff_keep` of the agents its offered load needs (in Erlangs, at the
    # span's start); the rest go not ready ("understaffed"), as when a peak hour is
    # rostered short. Relative to the load, so the dip shows at any hour of the
    # daily profile. For alerting demos and tests.
    understaff: tuple[timedelta, timedelta] | None = None
    understaff_keep: float = 0.5
    # Agents who rush their calls: each call's talk at this share of what it
    # would have been (a talk time 20% shorter than usual is the warning sign the
    # seeds' QA teams listen for; 0.6 is well past it). For the listening
    # sample's demos and tests (docs/qa.md). Drawn after the usual talk time, so
    # the random stream is the same with and without.
    rush: frozenset[str] = frozenset()
    rush_talk_share: float = 0.6
    # the calls answered from this instant on are rushed (None: all of them); a
    # history rushes only its last days, so the weeks before stay the baseline
    rush_from: datetime | None = None
    # From this instant the peak rate is this one (calls_per_hour before it): a
    # history thinned to post fast keeps its rushed days at the live rate, so they
    # hold calls enough to tell a rushing agent from its team (docs/qa.md)
    rate_change: tuple[datetime, float] | None = None
    # Agents work the shifts of a schedule (plan_schedule) instead of being on the
    # phones around the clock: they log in at the shift's start (some late, a few
    # not at all), take its breaks when their call allows, and log out at its end.
    schedule: list[Segment] | None = None
    late_prob: float = 0.10  # logs in 5-20 minutes after the shift starts
    absent_prob: float = 0.02  # does not come at all


# Shifts the planner builds: 8 hours on the phones with a 30-minute lunch after
# four and a 15-minute break in each half, as the seeds' centers roster them.
SHIFT_HOURS = 8.5
BREAKS = ((2.0, 0.25, "break"), (4.0, 0.5, "lunch"), (6.5, 0.25, "break"))


def handling_s(cfg: SimConfig) -> float:
    """Mean seconds an answered call keeps an agent: talk, hold (`hold_prob` of
    the calls, 35 s on average), wrap-up (22.5 s on average) and ring (3.5 s)."""
    return cfg.mean_talk_s + cfg.hold_prob * 35 + 22.5 + 3.5


def plan_schedule(
    cfg: SimConfig, teams: list[Team], first_day: Any, days: int, tz: ZoneInfo
) -> str:
    """A schedule CSV (services/core/schedules.py) for `days` local days from
    `first_day`: each team's agents on 8.5-hour shifts, a skeleton crew around
    the clock, then each shift placed where it covers the most of the hourly
    requirement (Erlang C, 80% in 20 s, of the
    daily profile's load) still uncovered, until the team runs out of agents or
    of requirement. Whole shifts against an hourly curve over- and under-staff
    the shoulders: the fit is good, not perfect, as a real roster's."""
    teams = [t for t in teams if t.queues and t.agents] or default_roster()
    weights = {t.id: len(t.agents) for t in teams}
    total = sum(weights.values())
    handling = handling_s(cfg)
    lines = ["agent_id,date,start,end,activity"]
    for team in teams:
        share = weights[team.id] / total
        need = []
        for h in range(24):
            rate = cfg.calls_per_hour * DAILY_PROFILE[h] * share / 3600
            p = required_agents(rate, handling, 20, 0.8)
            need.append(p.agents if p is not None else len(team.agents))
        # First a skeleton crew, one agent on at every hour that has calls (its
        # queue is never left unanswered), then each further shift where it covers
        # the most requirement still uncovered, while the team has agents.
        on = [0] * 24
        starts: list[int] = []
        while len(starts) < len(team.agents):
            empty = [h for h in range(24) if on[h] == 0 and need[h] > 0]
            if not empty:
                break
            starts.append(empty[0])
            for k in range(8):
                on[(empty[0] + k) % 24] += 1
        while len(starts) < len(team.agents):
            gain, h = max(
                (sum(max(0, need[(h + k) % 24] - on[(h + k) % 24]) for k in range(8)), -h)
                for h in range(24)
            )
            if gain == 0:
                break
            starts.append(-h)
            for k in range(8):
                on[(-h + k) % 24] += 1
        starts.sort()
        for d in range(days):
            day = first_day + timedelta(days=d)
            for i, (agent, h) in enumerate(zip(team.agents, starts, strict=False)):
                lines.append(f"{agent},{day},{h:02d}:00,{_clock(h + SHIFT_HOURS)},work")
                for after, length, what in BREAKS:
                    # staggered, so a shift's agents are not all away at once
                    b = h + after + (i % 3) * 0.25
                    lines.append(f"{agent},{day},{_clock(b)},{_clock(b + length)},{what}")
    return "\n".join(lines) + "\n"


def _clock(hours: float) -> str:
    h = hours % 24
    return f"{int(h):02d}:{round((h % 1) * 60):02d}"


@dataclass
class _Agent:
    id: str
    team: str
    busy: bool = False
    away: bool = False  # sent off the phones by the understaffing...
    parked: bool = False  # ...and now off them (not ready)
    off: bool = False  # rostered: off shift or on a break, takes no call
    out: bool = True  # rostered: logged out (off shift)
    due: str | None = None  # rostered: what to do once the call in hand ends


@dataclass
class _Call:
    id: str
    queue: str
    team: str
    customer: str
    offered: float
    done: bool = False
    answered: bool = False


def default_roster() -> list[Team]:
    return [
        Team(id="billing", name="Billing", queues=["billing"],
             agents=[f"b{i:02d}" for i in range(12)]),
        Team(id="tech", name="Technical support", queues=["tech", "internet"],
             agents=[f"t{i:02d}" for i in range(14)]),
        Team(id="sales", name="Sales", queues=["sales"], agents=[f"s{i:02d}" for i in range(6)]),
    ]  # fmt: skip


class Simulation:
    def __init__(self, cfg: SimConfig, teams: list[Team]) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.tz = ZoneInfo(cfg.timezone)
        teams = [t for t in teams if t.queues and t.agents] or default_roster()
        self.queues = [(q, t.id) for t in teams for q in t.queues]
        # Calls split across queues in proportion to the staff behind them, so
        # every team carries the same load per agent (as a rostered center would).
        self.queue_weights = [len(t.agents) / len(t.queues) for t in teams for _ in t.queues]
        self.agents = {a: _Agent(a, t.id) for t in teams for a in t.agents}
        self.team_agents = {t.id: [self.agents[a] for a in t.agents] for t in teams}
        self.waiting: dict[str, deque[_Call]] = {t.id: deque() for t in teams}
        self.t0 = cfg.start.timestamp()
        self._rush_s = cfg.rush_from.timestamp() if cfg.rush_from is not None else -math.inf
        self.prefix = f"s{cfg.seed}-{int(self.t0)}"
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = itertools.count()
        self._ids = itertools.count()
        self._calls = itertools.count()
        self.recent: deque[tuple[float, str]] = deque()

    # --- plumbing -------------------------------------------------------------
    def _at(self, t: float, kind: str, payload: Any) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), kind, payload))

    def _emit(self, t: float, typ: str, **fields: Any) -> None:
        self._at(t, "emit", {"type": typ, **fields})

    def _event(self, t: float, body: dict[str, Any]) -> dict[str, Any]:
        when = datetime.fromtimestamp(t, tz=UTC).astimezone(self.tz)
        return {"event_id": f"{self.prefix}-e{next(self._ids)}",
                "occurred_at": when.isoformat(timespec="milliseconds"), **body}  # fmt: skip

    def _peak_per_hour(self, t: float) -> float:
        change = self.cfg.rate_change
        if change is not None and t >= change[0].timestamp():
            return change[1]
        return self.cfg.calls_per_hour

    def _rate_per_s(self, t: float) -> float:
        hour = datetime.fromtimestamp(t, tz=UTC).astimezone(self.tz).hour
        return self._peak_per_hour(t) * DAILY_PROFILE[hour] / 3600.0

    # --- the model ------------------------------------------------------------
    def events(self) -> Iterator[dict[str, Any]]:
        cfg, rng = self.cfg, self.rng
        end = self.t0 + cfg.duration.total_seconds()
        if cfg.schedule is None:
            for agent in self.agents.values():
                self._emit(self.t0, "agent.state", agent_id=agent.id, state="available")
        else:
            self._roster(cfg.schedule, end)
        self._schedule_arrival(self.t0)
        if cfg.understaff is not None:
            off, length = (d.total_seconds() for d in cfg.understaff)
            self._at(self.t0 + off, "understaff", True)
            self._at(self.t0 + off + length, "understaff", False)
        t = self.t0
        while self._heap:
            t, _, kind, payload = heapq.heappop(self._heap)
            if t > end and kind == "arrival":
                continue
            if kind == "emit":
                yield self._event(t, payload)
            elif kind == "arrival":
                self._arrive(t)
                self._schedule_arrival(t)
            elif kind == "give_up":
                self._give_up(t, payload)
            elif kind == "free":
                self._agent_free(t, payload)
            elif kind == "ring_done":
                self._ring_done(t, *payload)
            elif kind == "understaff":
                self._understaff(t, payload)
            elif kind == "shift":
                self._shift(t, *payload)
        # The shift ends once the last call is done: everyone logs out, so no state
        # is left open (an open state keeps counting up to "now" in live windows).
        for agent in self.agents.values():
            yield self._event(
                t, {"type": "agent.state", "agent_id": agent.id, "state": "logged_out"}
            )
        _ = rng

    def _schedule_arrival(self, t: float) -> None:
        # Thinning keeps arrivals Poisson under an hourly-varying rate.
        change = self.cfg.rate_change
        peak = max(self.cfg.calls_per_hour, change[1] if change else 0.0) / 3600.0
        while True:
            t += self.rng.expovariate(peak)
            if self.rng.random() <= self._rate_per_s(t) / peak:
                self._at(t, "arrival", None)
                return

    def _customer(self, t: float) -> str:
        while self.recent and self.recent[0][0] < t - 72 * 3600:
            self.recent.popleft()
        if self.recent and self.rng.random() < self.cfg.repeat_prob:
            return self.rng.choice(self.recent)[1]
        return f"+86138{self.rng.randrange(self.cfg.customers):08d}"

    def _arrive(self, t: float) -> None:
        q, team = self.rng.choices(self.queues, self.queue_weights)[0]
        call = _Call(f"{self.prefix}-c{next(self._calls)}", q, team, self._customer(t), t)
        self.recent.append((t, call.customer))
        self._emit(t, "call.offered", call_id=call.id, queue_id=q, customer_id=call.customer)
        if self.rng.random() < self.cfg.short_abandon_share:
            patience = self.rng.uniform(0.5, 4.5)
        else:
            patience = self.rng.expovariate(1 / self.cfg.mean_patience_s)
        self._at(t + min(patience, self.cfg.max_wait_s), "give_up", (call, patience))
        self.waiting[team].append(call)
        self._dispatch(t, team)

    def _give_up(self, t: float, payload: tuple[_Call, float]) -> None:
        call, patience = payload
        if call.done or call.answered:
            return
        call.done = True
        if call in self.waiting[call.team]:
            self.waiting[call.team].remove(call)
        by = "system" if patience >= self.cfg.max_wait_s else "customer"
        self._emit(t, "call.ended", call_id=call.id, ended_by=by)

    def _dispatch(self, t: float, team: str) -> None:
        free = [a for a in self.team_agents[team] if not a.busy and not a.off]
        while free and self.waiting[team]:
            call = self.waiting[team].popleft()
            if call.done:
                continue
            agent = free.pop(self.rng.randrange(len(free)))
            agent.busy = True
            self._emit(t, "call.ringing", call_id=call.id, agent_id=agent.id)
            if self.rng.random() < self.cfg.rona_prob:
                self._at(t + 15.0, "ring_done", (call, agent, False))
            else:
                self._at(t + self.rng.uniform(1.0, 6.0), "ring_done", (call, agent, True))

    def _ring_done(self, t: float, call: _Call, agent: _Agent, picked_up: bool) -> None:
        rng, cfg = self.rng, self.cfg
        if not picked_up or call.done:
            if not picked_up:  # RONA: the agent is made not ready for a while
                self._emit(t, "agent.state", agent_id=agent.id, state="not_ready", reason="rona")
                self._emit(t + 30, "agent.state", agent_id=agent.id, state="available")
                self._at(t + 30, "free", agent)
                if not call.done:
                    self.waiting[call.team].appendleft(call)
                    self._dispatch(t, call.team)
            else:
                self._at(t, "free", agent)
            return
        call.answered = True
        self._emit(t, "call.answered", call_id=call.id, agent_id=agent.id)
        self._emit(t, "agent.state", agent_id=agent.id, state="on_call")
        talk = rng.lognormvariate(math.log(cfg.mean_talk_s) - 0.18, 0.6)
        if agent.id in cfg.rush and t >= self._rush_s:
            talk *= cfg.rush_talk_share
        end = t + talk
        if rng.random() < cfg.hold_prob:
            h0 = t + talk * rng.uniform(0.2, 0.6)
            hold = rng.uniform(10, 60)
            self._emit(h0, "call.hold", call_id=call.id, agent_id=agent.id)
            self._emit(h0 + hold, "call.resumed", call_id=call.id, agent_id=agent.id)
            end += hold
        leg_agent = agent
        if rng.random() < cfg.transfer_prob:
            others = [a for a in self.team_agents[call.team] if not a.busy and not a.off]
            if others:
                other = rng.choice(others)
                other.busy = True
                tt = end
                self._emit(tt, "call.transferred", call_id=call.id, agent_id=agent.id,
                           to_agent_id=other.id)  # fmt: skip
                self._wrap_up(tt, call, agent)
                self._emit(tt + 1, "call.ringing", call_id=call.id, agent_id=other.id)
                self._emit(tt + 3, "call.answered", call_id=call.id, agent_id=other.id)
                self._emit(tt + 3, "agent.state", agent_id=other.id, state="on_call")
                end = tt + 3 + rng.lognormvariate(math.log(cfg.mean_talk_s / 2), 0.5)
                leg_agent = other
        self._emit(end, "call.ended", call_id=call.id,
                   ended_by="customer" if rng.random() < 0.6 else "agent")  # fmt: skip
        self._wrap_up(end, call, leg_agent)
        call.done = True
        if rng.random() < cfg.survey_prob:
            score = rng.choices([1, 2, 3, 4, 5], weights=[2, 3, 8, 30, 57])[0]
            self._emit(end + rng.uniform(20, 90), "survey.completed", call_id=call.id, score=score)

    def _wrap_up(self, t: float, call: _Call, agent: _Agent) -> None:
        rng, cfg = self.rng, self.cfg
        self._emit(t, "agent.state", agent_id=agent.id, state="wrap_up")
        done = t + rng.uniform(5, 40)
        self._emit(done, "call.wrapup_ended", call_id=call.id, agent_id=agent.id)
        disposition: dict[str, Any] = {"resolved": rng.random() < cfg.resolved_prob}
        if rng.random() < cfg.complaint_prob:
            disposition["complaint"] = True
        if rng.random() < cfg.sale_prob:
            disposition["sale_amount"] = round(rng.uniform(50, 5000), 2)
        self._emit(done, "call.disposition", call_id=call.id, agent_id=agent.id, **disposition)
        if rng.random() < cfg.break_prob:
            self._emit(done, "agent.state", agent_id=agent.id, state="not_ready", reason="break")
            back = done + rng.uniform(120, 600)
        else:
            back = done
        self._emit(back, "agent.state", agent_id=agent.id, state="available")
        self._at(back, "free", agent)

    def _agent_free(self, t: float, agent: _Agent) -> None:
        if agent.away:  # finishes the call, then leaves the phones
            self._park(t, agent)
            return
        agent.busy = False
        if agent.due is not None:  # a break or the shift's end waited for the call
            what, agent.due = agent.due, None
            self._shift(t, agent, what)
            return
        if not agent.off:
            self._dispatch(t, agent.team)

    def _roster(self, plan: list[Segment], end: float) -> None:
        """The shifts and breaks of `plan` that start before the end, as events."""
        rng = self.rng
        by_day: dict[tuple[str, Any], list[Segment]] = {}
        for seg in plan:
            if seg.agent_id in self.agents:
                by_day.setdefault((seg.agent_id, seg.day), []).append(seg)
        for (agent_id, _day), segs in sorted(by_day.items()):
            agent = self.agents[agent_id]
            first = min(g.start_us for g in segs) / 1e6
            last = max(g.end_us for g in segs) / 1e6
            if last <= self.t0 or first >= end or rng.random() < self.cfg.absent_prob:
                continue
            late = rng.uniform(300, 1200) if rng.random() < self.cfg.late_prob else 0.0
            self._at(max(self.t0, first + late + rng.uniform(-120, 60)), "shift", (agent, "login"))
            for g in segs:
                if g.activity != "work" and g.start_us / 1e6 >= self.t0:
                    self._at(g.start_us / 1e6, "shift", (agent, f"away:{g.activity}"))
                    self._at(g.end_us / 1e6 + rng.uniform(0, 180), "shift", (agent, "back"))
            self._at(last, "shift", (agent, "logout"))
        agents = {a for a, _ in by_day}
        for agent in self.agents.values():
            agent.off = True  # nobody takes calls before the shift begins
            if agent.id not in agents:
                self._emit(self.t0, "agent.state", agent_id=agent.id, state="logged_out")

    def _shift(self, t: float, agent: _Agent, what: str) -> None:
        """A rostered agent's login, break, return or logout; a break or logout
        that finds the agent on a call waits for the call (and its wrap-up)."""
        if what == "login":
            agent.off = agent.out = False
            self._emit(t, "agent.state", agent_id=agent.id, state="available")
            self._dispatch(t, agent.team)
            return
        if what == "back":
            if agent.due is not None and agent.due.startswith("away:"):
                agent.due = None  # the call outlasted the break: worked through it
            elif agent.off and not agent.out and not agent.busy:
                agent.off = False
                self._emit(t, "agent.state", agent_id=agent.id, state="available")
                self._dispatch(t, agent.team)
            return
        if agent.out:
            return
        if agent.busy:
            agent.due = what if agent.due != "logout" else agent.due
            return
        agent.off = True
        if what == "logout":
            agent.out = True
            self._emit(t, "agent.state", agent_id=agent.id, state="logged_out")
        else:
            self._emit(t, "agent.state", agent_id=agent.id, state="not_ready",
                       reason=what.removeprefix("away:"))  # fmt: skip

    def _park(self, t: float, agent: _Agent) -> None:
        agent.busy = agent.parked = True  # busy: dispatch passes it over
        self._emit(t, "agent.state", agent_id=agent.id, state="not_ready", reason="understaffed")

    def _erlangs(self, t: float, team: str) -> float:
        """Agents the team's offered load keeps busy: arrival rate × mean handling
        time (talk, hold, wrap-up and ring)."""
        share = sum(w for (_, tm), w in zip(self.queues, self.queue_weights, strict=True)
                    if tm == team) / sum(self.queue_weights)  # fmt: skip
        cfg = self.cfg
        handling = handling_s(cfg)
        return self._rate_per_s(t) * share * handling

    def _understaff(self, t: float, start: bool) -> None:
        for team, agents in self.team_agents.items():
            if start:
                keep = max(1, math.floor(self._erlangs(t, team) * self.cfg.understaff_keep))
                for agent in agents[keep:]:
                    agent.away = True
                    if not agent.busy:
                        self._park(t, agent)
                continue
            for agent in agents:
                # one still on a call comes back through its own free event
                agent.away = False
                if agent.parked:
                    agent.parked = agent.busy = False
                    self._emit(t, "agent.state", agent_id=agent.id, state="available")
            self._dispatch(t, team)
