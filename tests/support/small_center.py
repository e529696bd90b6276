"""The two-team center of the property tests (tests/support/scenarios.py): its
settings, the reference's figures under them, and exact comparison."""

from __future__ import annotations

from typing import Any

from services.core.settings import Settings, Team
from tests.support.reference import reference
from tests.support.scenarios import TEAM_OF_AGENT, TEAM_OF_QUEUE

# closed calls counted against, voicemail not: a center's own 接通率
ANSWER_RATE_MISSES = ("abandoned", "timed_out", "closed", "queue_full", "blocked_at_entry",
                      "blocked_in_queue", "exited_by_key", "callbacks_accepted")  # fmt: skip
SETTINGS = Settings(
    teams=[
        Team(id="billing", queues=["billing"], agents=["a1", "a2"]),
        Team(id="tech", queues=["tech"], agents=["a3"]),
    ],
    # one hour, so the scenarios' multi-hour gaps between state changes hit the cap
    kpi={
        "service_level_seconds": 20,
        "short_abandon_seconds": 5,
        "fcr_window_hours": 1,
        "max_state_hours": 1,
        # not the defaults, so the settings' path is what is checked
        "answer_rate_misses": ANSWER_RATE_MISSES,
    },
)


def assert_same(actual: dict[Any, dict[str, Any]], expected: dict[Any, dict[str, Any]]) -> None:
    assert set(actual) == set(expected), (
        f"entities differ: only streaming {set(actual) - set(expected)}, "
        f"only reference {set(expected) - set(actual)}"
    )
    for key, exp in expected.items():
        got = actual[key]
        for name, value in exp.items():
            # exact: counts are integers and every rate or mean is one correctly
            # rounded division of exact integers on both sides
            assert got[name] == value, (key, name, got[name], value)


def expected(
    events: list[dict[str, Any]], by_bucket: bool = False, sl: int = 20
) -> dict[Any, dict[str, Any]]:
    return reference(
        events,
        team_of_queue=TEAM_OF_QUEUE,
        team_of_agent=TEAM_OF_AGENT,
        service_level_seconds=sl,
        short_abandon_seconds=5,
        fcr_window_hours=1,
        max_state_hours=1,
        by_bucket=by_bucket,
        answer_rate_misses=ANSWER_RATE_MISSES,
    )
