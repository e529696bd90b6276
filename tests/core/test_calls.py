"""Call assembly, worked by hand."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.core.calls import (
    Compact,
    Contribution,
    call_contribution,
    compact,
    fcr_contributions,
    merge_events,
)
from services.core.settings import KpiDefinitions

S = 1_000_000
T0 = 1_795_000_000 * S  # a minute boundary
DEFS = KpiDefinitions(service_level_seconds=20, short_abandon_seconds=5, fcr_window_hours=72)
TEAMS = {"billing": "billing"}


def ev(eid: str, typ: str, t: float, **f: Any) -> Compact:
    return compact({"event_id": eid, "type": typ, "ts": T0 + int(t * S), **f})


def contrib(*events: Compact) -> dict[tuple[str, str], dict[str, int]]:
    store: dict[str, Compact] = {}
    merge_events(store, events)
    return call_contribution("c", store, DEFS, TEAMS, "unassigned").entities


def test_answered_call_with_hold_transfer_and_wrapup_splits_time_between_agents() -> None:
    e = contrib(
        ev("1", "call.offered", 0, queue_id="billing"),
        ev("2", "call.ringing", 10, agent_id="a"),
        ev("3", "call.answered", 12, agent_id="a"),
        ev("4", "call.hold", 40, agent_id="a"),
        ev("5", "call.resumed", 70, agent_id="a"),
        ev("6", "call.transferred", 100, agent_id="a", to_agent_id="b"),
        ev("7", "call.wrapup_ended", 110, agent_id="a"),
        ev("8", "call.ringing", 101, agent_id="b"),
        ev("9", "call.answered", 104, agent_id="b"),
        ev("10", "call.ended", 200, ended_by="customer"),
        ev("11", "call.wrapup_ended", 230, agent_id="b"),
    )
    center = e[("center", "all")]
    assert center["answered"] == 1 and center["answered_within_sl"] == 1
    assert center["wait_answered_us"] == 12 * S
    # talk = (200 - 12) - 30 hold; acw = last wrap-up 230 - end 200
    assert (center["talk_us"], center["hold_us"], center["acw_us"]) == (158 * S, 30 * S, 30 * S)
    assert center["transfers"] == 1 and e[("team", "billing")] == center
    a, b = e[("agent", "a")], e[("agent", "b")]
    # a's leg: 12 → 100 with 30 s hold; acw 110 - 100
    assert (a["talk_us"], a["hold_us"], a["acw_us"], a["ring_us"]) == (
        58 * S,
        30 * S,
        10 * S,
        2 * S,
    )
    assert a["transfers"] == 1 and a["handled"] == 1
    # b's leg: 104 → 200, no hold; acw 230 - 200
    assert (b["talk_us"], b.get("hold_us", 0), b["acw_us"], b["ring_us"]) == (
        96 * S,
        0,
        30 * S,
        3 * S,
    )


def test_abandon_after_4_seconds_is_short_and_leaves_the_answer_rate_base() -> None:
    e = contrib(
        ev("1", "call.offered", 0, queue_id="x"), ev("2", "call.ended", 4.999, ended_by="customer")
    )
    assert e[("center", "all")] == {
        "offered": 1,
        "abandoned": 1,
        "short_abandoned": 1,
        "abandoned_within_sl": 1,
        "abandoned_wait_5": 1,
        "waited": 1,
        "wait_all_us": 4_999_000,
    }
    assert ("team", "unassigned") in e


def test_abandon_at_exactly_5_seconds_is_not_short() -> None:
    e = contrib(
        ev("1", "call.offered", 0, queue_id="x"), ev("2", "call.ended", 5, ended_by="customer")
    )
    assert "short_abandoned" not in e[("center", "all")]


def test_call_ended_by_system_unanswered_is_timed_out() -> None:
    e = contrib(
        ev("1", "call.offered", 0, queue_id="x"), ev("2", "call.ended", 300, ended_by="system")
    )
    assert e[("center", "all")] == {
        "offered": 1,
        "timed_out": 1,
        "waited": 1,
        "wait_all_us": 300 * S,
    }


@pytest.mark.parametrize(
    ("reason", "outcome", "queued"),
    [("abandoned", "abandoned", True), ("timeout", "timed_out", True),
     ("closed", "closed", False), ("full", "queue_full", False), ("diverted", "diverted", False),
     ("no_agents", "blocked_at_entry", False), ("agents_left", "blocked_in_queue", True),
     ("exit_key", "exited_by_key", True), ("voicemail", "to_voicemail", True),
     ("callback", "callbacks_accepted", True)],
)  # fmt: skip
def test_the_reason_a_call_ended_unanswered_is_its_outcome(
    reason: str, outcome: str, queued: bool
) -> None:
    """The reason decides, whoever ended the call; only calls that queued count
    in the all-calls wait (the refused never waited, whatever the clock says)."""
    e = contrib(
        ev("1", "call.offered", 0, queue_id="x"),
        ev("2", "call.ended", 30, ended_by="system", reason=reason),
    )
    c = e[("center", "all")]
    assert c[outcome] == 1
    assert c.get("timed_out", 0) == (outcome == "timed_out")
    assert c.get("abandoned", 0) == (outcome == "abandoned")
    assert (c.get("waited", 0), c.get("wait_all_us", 0)) == ((1, 30 * S) if queued else (0, 0))


def test_a_reason_on_an_answered_call_changes_nothing() -> None:
    e = contrib(
        ev("1", "call.offered", 0, queue_id="x"),
        ev("2", "call.answered", 10, agent_id="a"),
        ev("3", "call.ended", 70, ended_by="customer", reason="closed"),
    )
    c = e[("center", "all")]
    assert c["answered"] == 1 and "closed" not in c and c["wait_all_us"] == 10 * S


def test_a_callback_is_counted_from_its_offer_to_its_completion_and_is_no_abandon() -> None:
    """Offered at 40 s, taken at 45 s (the caller left the queue then: the wait
    ends there, even though the call's end, a hang-up, is logged at 50 s), and
    completed at 645 s: a callback wait of 600 s."""
    e = contrib(
        ev("1", "call.offered", 0, queue_id="x"),
        ev("2", "call.callback", 40, stage="offered"),
        ev("3", "call.callback", 45, stage="accepted"),
        ev("4", "call.ended", 50, ended_by="customer"),
        ev("5", "call.callback", 645, stage="completed"),
    )
    c = e[("center", "all")]
    assert "abandoned" not in c
    assert (c["callbacks_offered"], c["callbacks_accepted"], c["callbacks_completed"]) == (1, 1, 1)
    assert c["callback_wait_us"] == 600 * S and c["wait_all_us"] == 45 * S


def test_a_callback_offered_and_declined_leaves_the_call_as_it_ended() -> None:
    e = contrib(
        ev("1", "call.offered", 0, queue_id="x"),
        ev("2", "call.callback", 40, stage="offered"),
        ev("3", "call.ended", 90, ended_by="customer"),
    )
    c = e[("center", "all")]
    assert (c["callbacks_offered"], c["abandoned"]) == (1, 1) and "callbacks_accepted" not in c


def test_an_ivr_abandon_is_counted_apart_and_is_no_offered_call() -> None:
    with_queue = contrib(ev("1", "call.ivr_abandoned", 12, queue_id="billing"))
    assert with_queue == {
        ("center", "all"): {"ivr_abandoned": 1},
        ("team", "billing"): {"ivr_abandoned": 1},
        ("queue", "billing"): {"ivr_abandoned": 1},
    }
    assert contrib(ev("1", "call.ivr_abandoned", 12)) == {("center", "all"): {"ivr_abandoned": 1}}
    # it reached a queue after all: the queue's outcome, not an IVR abandon
    reached = contrib(
        ev("1", "call.ivr_abandoned", 12, queue_id="billing"),
        ev("2", "call.offered", 20, queue_id="billing"),
        ev("3", "call.ended", 30, ended_by="customer"),
    )
    assert "ivr_abandoned" not in reached[("center", "all")]


def test_open_hold_closes_at_the_end_of_the_call() -> None:
    e = contrib(
        ev("1", "call.offered", 0, queue_id="x"),
        ev("2", "call.answered", 20, agent_id="a"),
        ev("3", "call.hold", 50, agent_id="a"),
        ev("4", "call.ended", 80, ended_by="agent"),
    )
    c = e[("center", "all")]
    assert (c["hold_us"], c["talk_us"], c.get("acw_us", 0)) == (30 * S, 30 * S, 0)
    assert c["answered_within_sl"] == 1  # wait of exactly 20 s is within 20 s


def test_ring_no_answer_counts_presented_not_answered_for_that_agent() -> None:
    e = contrib(
        ev("1", "call.offered", 0, queue_id="x"),
        ev("2", "call.ringing", 1, agent_id="a"),
        ev("3", "call.ringing", 16, agent_id="b"),
        ev("4", "call.answered", 18, agent_id="b"),
    )
    assert e[("agent", "a")] == {"presented": 1}
    assert e[("agent", "b")]["answered"] == 1
    assert "handled" not in e[("center", "all")]  # answered but not ended yet


def test_call_without_its_offered_event_contributes_nothing_until_it_arrives() -> None:
    assert contrib(ev("2", "call.answered", 5, agent_id="a")) == {}


def test_duplicate_event_ids_change_nothing() -> None:
    store: dict[str, Compact] = {}
    assert merge_events(store, [ev("1", "call.offered", 0, queue_id="x")])
    assert not merge_events(store, [ev("1", "call.offered", 0, queue_id="x")])


def test_conflicting_copies_of_one_event_id_resolve_the_same_whatever_the_order() -> None:
    x, y = ev("1", "call.offered", 0, queue_id="x"), ev("1", "call.offered", 0, queue_id="y")
    s1: dict[str, Compact] = {}
    s2: dict[str, Compact] = {}
    merge_events(s1, [x]), merge_events(s1, [y])
    merge_events(s2, [y]), merge_events(s2, [x])
    assert s1 == s2


def fact(
    cid: str, t_h: float, *, answered: bool = True, short: bool = False, unresolved: bool = False
) -> dict[str, Any]:
    return {"call_id": cid, "customer": "k", "offered_at": T0 + int(t_h * 3600 * S), "queue": "q",
            "team": "t", "answered": answered, "short_abandoned": short, "unresolved": unresolved,
            "last_agent": "a"}  # fmt: skip


def test_repeat_within_72h_fails_fcr_and_a_short_abandon_does_not_count_as_repeat() -> None:
    window = 72 * 3600 * S
    out = fcr_contributions([fact("A", 0), fact("B", 71.9, answered=False, short=True)], T0, window)
    assert out["A"].entities[("center", "all")] == {"fcr_candidates": 1}  # provisional, not final
    out = fcr_contributions([fact("A", 0), fact("B", 72, answered=False)], T0, window)
    assert out["A"].entities[("center", "all")] == {
        "fcr_candidates": 1,
        "fcr_failed": 1,
        "fcr_final": 1,
    }
    out = fcr_contributions([fact("A", 0), fact("B", 72.01, answered=False)], T0, window)
    assert "fcr_failed" not in out["A"].entities[("center", "all")]


def test_fcr_is_final_and_resolved_only_once_the_watermark_passes_the_window() -> None:
    window = 72 * 3600 * S
    at_edge = fcr_contributions([fact("A", 0)], T0 + window, window)["A"]
    after = fcr_contributions([fact("A", 0)], T0 + window + 1, window)["A"]
    assert "fcr_final" not in at_edge.entities[("center", "all")]
    assert after.entities[("agent", "a")] == {
        "fcr_candidates": 1,
        "fcr_final": 1,
        "fcr_resolved": 1,
    }


def test_unresolved_disposition_fails_fcr_immediately() -> None:
    out = fcr_contributions([fact("A", 0, unresolved=True)], T0, 72 * 3600 * S)
    assert out["A"].entities[("queue", "q")] == {
        "fcr_candidates": 1,
        "fcr_failed": 1,
        "fcr_final": 1,
    }


def test_ring_at_the_same_instant_as_the_answer_counts_whatever_the_ids() -> None:
    # "10" sorts before "9": the ring comes after the answer in (time, id) order
    e = contrib(
        ev("1", "call.offered", 0, queue_id="x"),
        ev("9", "call.ringing", 7, agent_id="a"),
        ev("10", "call.answered", 7, agent_id="a"),
    )
    assert e[("agent", "a")]["ring_count"] == 1 and e[("agent", "a")].get("ring_us", 0) == 0


def test_second_survey_replaces_the_first_and_goes_to_the_agent_who_answered_last() -> None:
    e = contrib(
        ev("1", "call.offered", 0, queue_id="x"),
        ev("2", "call.answered", 5, agent_id="a"),
        ev("3", "call.transferred", 30, agent_id="a", to_agent_id="b"),
        ev("4", "call.answered", 35, agent_id="b"),
        ev("5", "call.ended", 90, ended_by="customer"),
        ev("6", "survey.completed", 120, score=5),
        ev("7", "survey.completed", 130, score=2),
        ev("8", "call.disposition", 95, agent_id="b", complaint=True, sale_amount=19.99),
        ev("9", "call.disposition", 96, agent_id="b", sale_amount=0.125),
    )
    center = e[("center", "all")]
    assert (center["surveys"], center.get("satisfied", 0)) == (1, 0)  # the later score 2 counts
    assert "complaints" not in center  # the latest disposition says no complaint
    assert (center["sales"], center["sales_amount_cents"]) == (1, 12)  # 12.5 cents, half-even
    assert e[("agent", "b")]["surveys"] == 1 and "surveys" not in e[("agent", "a")]


def test_a_contribution_is_stored_with_shared_counters_once_and_reads_back_equal() -> None:
    same = {"offered": 1, "answered": 1, "talk_us": 81_034_000}
    c = Contribution(
        1_790_825_700_000_000,
        {
            ("center", "all"): dict(same),
            ("team", "billing"): dict(same),
            ("queue", "q3"): dict(same),
            ("agent", "a3-2"): {"answered": 1, "presented": 1},
        },
    )
    stored = c.to_json()
    assert len(stored[1]) == 2  # center, team and queue share one entry
    assert Contribution.from_json(orjson.loads(orjson.dumps(stored))) == c
    # the one-entry-per-entity form earlier versions stored still reads back
    earlier = [c.bucket_us, [[k, i, counters] for (k, i), counters in c.entities.items()]]
    assert Contribution.from_json(earlier) == c
