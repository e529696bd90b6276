"""Which of an agent's calls to listen to, and which look suspicious: pure
functions over call-detail records (services/core/call_detail.py), so the calls
a sample lists are the ones GET /v1/calls shows (docs/qa.md, "The calls").

Suspicious calls are the known ways to game the answered count or to get rid of
a caller: a call answered and over within a few seconds (`short`), the same
ended by the agent (`released`: the agent hung up on the caller), and a call
passed on twice or more (`transfers`: answered on three legs or more).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SUSPICIOUS = ("short", "released", "transfers")
# A call answered on this many legs was passed on at least twice
REPEATED_TRANSFER_LEGS = 3


def leg(record: Mapping[str, Any], agent: str) -> Mapping[str, Any] | None:
    """The agent's answered leg of the call, None when it did not answer it."""
    for a in record["agents"]:
        if a["agent_id"] == agent and a["answered"]:
            return a  # type: ignore[no-any-return]
    return None


def suspicious(record: Mapping[str, Any], agent: str, short_seconds: float) -> tuple[str, ...]:
    """What is suspicious about the agent's part in this call (in SUSPICIOUS's
    order); empty when nothing is or the agent did not answer it."""
    mine = leg(record, agent)
    if mine is None or mine["talk_seconds"] is None:
        return ()
    out: list[str] = []
    if mine["talk_seconds"] < short_seconds:
        out.append("short")
        if record["ended_by"] == "agent" and record["last_agent"] == agent:
            out.append("released")
    if record["answered_legs"] >= REPEATED_TRANSFER_LEGS:
        out.append("transfers")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Suspicious:
    """An agent's suspicious calls in a period, by kind, beside its answered ones."""

    answered: int
    counts: Mapping[str, int]

    def share(self, kind: str) -> float | None:
        return self.counts.get(kind, 0) / self.answered if self.answered else None

    def short_calls_abnormal(self, least: int, share: float) -> bool:
        """At least `least` short calls, making at least `share` of the answered
        ones: a fixed line (qa.short_calls_min, qa.short_call_share), not a
        deviation, since a few short calls happen to anyone."""
        got = self.share("short")
        return self.counts.get("short", 0) >= least and got is not None and got >= share


def count_suspicious(
    records: Iterable[Mapping[str, Any]], agent: str, short_seconds: float
) -> Suspicious:
    answered = 0
    counts = dict.fromkeys(SUSPICIOUS, 0)
    for r in records:
        if leg(r, agent) is None:
            continue
        answered += 1
        for kind in suspicious(r, agent, short_seconds):
            counts[kind] += 1
    return Suspicious(answered, counts)


def count_by_interval(
    records: Iterable[Mapping[str, Any]],
    agents: Iterable[str],
    edges_us: list[int],
    short_seconds: float,
) -> dict[tuple[int, str], Suspicious]:
    """Each agent's suspicious calls per interval [edges[i], edges[i+1]) of the
    calls' arrival (µs, as the figures count them); only (interval, agent)
    pairs with an answered call."""
    by: dict[tuple[int, str], list[Mapping[str, Any]]] = {}
    wanted = set(agents)
    for r in records:
        i = bisect.bisect_right(edges_us, r["offered_us"]) - 1
        if not 0 <= i < len(edges_us) - 1:
            continue
        for a in r["agents"]:
            if a["agent_id"] in wanted and a["answered"]:
                by.setdefault((i, a["agent_id"]), []).append(r)
    return {k: count_suspicious(rows, k[1], short_seconds) for k, rows in sorted(by.items())}


def _talk(record: Mapping[str, Any], agent: str) -> float:
    mine = leg(record, agent)
    return float(mine["talk_seconds"] or 0) if mine is not None else 0.0


def _of_leg(name: str) -> Any:
    def key(record: Mapping[str, Any], agent: str) -> float:
        mine = leg(record, agent)
        return -float(mine[name] or 0) if mine is not None else 0.0

    return key


def _transferred(record: Mapping[str, Any], agent: str) -> bool:
    mine = leg(record, agent)
    return bool(mine and mine["transferred"])


def _everyone(_record: Mapping[str, Any], _agent: str) -> bool:
    return True


def _none(_record: Mapping[str, Any], _agent: str) -> int:
    return 0


# The calls that show a reason (which of the agent's answered calls, in what
# order): the shortest talk for a fall of talk time (or of AHT, the usual way it
# falls), the longest hold or wrap-up for a rise, the calls it transferred, those
# with a complaint, the lowest survey scores, those FCR found not resolved. A
# fall of sales has no call that shows it: its share goes to drawn calls.
_SHOWN_BY: dict[str, tuple[Any, Any]] = {
    "avg_talk_seconds": (_everyone, _talk),
    "aht_seconds": (_everyone, _talk),
    "avg_hold_seconds": (_everyone, _of_leg("hold_seconds")),
    "avg_acw_seconds": (_everyone, _of_leg("acw_seconds")),
    "transfer_rate": (_transferred, _none),
    "complaint_rate": (lambda r, _a: r.get("complaint") is True, _none),
    "csat": (lambda r, _a: r.get("survey_score") is not None, lambda r, _a: r["survey_score"]),
    "fcr_rate": (lambda r, _a: r.get("fcr") == "not_resolved", _none),
}


def call_rank(period: str, team: str, agent: str, call_id: str) -> str:
    """A drawn call's place: SHA-256 of callkpi-qa:<period>:<team>:<agent>:<call>."""
    text = f"callkpi-qa:{period}:{team}:{agent}:{call_id}"
    return hashlib.sha256(text.encode()).hexdigest()


def calls_to_hear(
    records: Iterable[Mapping[str, Any]],
    agent: str,
    reasons: Iterable[str],
    n: int,
    period: str,
    team: str,
    short_seconds: float,
) -> list[tuple[Mapping[str, Any], str]]:
    """Up to `n` of the agent's calls, each with why it is listed. For each
    reason in turn (a figure, `short_calls`, `rona_rate`), an equal share of `n`
    of the calls that show it most; then, to fill up to `n`, the agent's other answered calls by
    `call_rank` (re-derivable, as the agents' draw). Calls it was presented and
    did not answer count only for `rona_rate`."""
    mine = [r for r in records if any(a["agent_id"] == agent for a in r["agents"])]
    answered = [r for r in mine if leg(r, agent) is not None]
    taken: dict[str, tuple[Mapping[str, Any], str]] = {}
    reasons = list(reasons)
    quota = max(1, n // len(reasons)) if reasons else n

    def take(rows: Iterable[Mapping[str, Any]], why: str, most: int = n) -> None:
        before = len(taken)
        for r in rows:
            if len(taken) >= n or len(taken) - before >= most:
                return
            if r["call_id"] not in taken:
                taken[r["call_id"]] = (r, why)

    for reason in reasons:
        if reason == "rona_rate":
            take([r for r in mine if leg(r, agent) is None], reason, quota)
        elif reason == "short_calls":
            take([r for r in answered if suspicious(r, agent, short_seconds)], reason, quota)
        elif reason in _SHOWN_BY:
            keep, key = _SHOWN_BY[reason]
            shown = [r for r in answered if keep(r, agent)]
            take(sorted(shown, key=lambda r: (key(r, agent), r["call_id"])), reason, quota)
    take(sorted(answered, key=lambda r: call_rank(period, team, agent, r["call_id"])), "drawn")
    return list(taken.values())
