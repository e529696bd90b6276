"""Which agents' recordings to listen to in a period: every abnormal agent
first, then others in an order anyone can re-derive, until the coverage is met.
Pure functions (docs/qa.md, "The sample").

The rest are drawn by hashing, not by a random generator: each agent's rank is
SHA-256 of `callkpi-qa:<period>:<team>:<agent>` and the lowest ranks are taken.
The same request gives the same sample on any machine and any Python, an
auditor can re-derive it with any SHA-256 tool, and one agent more or less in
the roster does not reshuffle the others.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pick:
    agent: str
    reasons: tuple[str, ...]  # why it is abnormal; empty for a drawn agent
    rank: str  # the hash that ordered it among the drawn ("" for abnormal agents)

    @property
    def abnormal(self) -> bool:
        return bool(self.reasons)


def rank(period: str, team: str, agent: str) -> str:
    return hashlib.sha256(f"callkpi-qa:{period}:{team}:{agent}".encode()).hexdigest()


def pick(
    agents: Iterable[str],
    abnormal: Mapping[str, Iterable[str]],
    coverage: float,
    period: str,
    team: str,
) -> list[Pick]:
    """At least ceil(coverage × agents) agents of `agents`: every one in
    `abnormal` (agent → its reasons), by id, then the others by `rank`. More
    abnormal agents than the coverage asks for are all kept."""
    if not 0 <= coverage <= 1:
        raise ValueError(f"coverage: {coverage} is not between 0 and 1")
    roster = sorted(set(agents))
    flagged = [Pick(a, tuple(abnormal[a]), "") for a in roster if abnormal.get(a)]
    wanted = math.ceil(coverage * len(roster))
    taken = {p.agent for p in flagged}
    others = sorted((rank(period, team, a), a) for a in roster if a not in taken)
    drawn = [Pick(a, (), r) for r, a in others[: max(0, wanted - len(flagged))]]
    return flagged + drawn
