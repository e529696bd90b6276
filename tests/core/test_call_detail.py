"""Each call's record (GET /v1/calls) equals the reference's per-call view,
whatever the delivery: shuffled, duplicated, in batches, FCR facts re-read."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from services.core.call_detail import call_record, matches
from services.core.settings import UNASSIGNED_TEAM
from tests.support.memory_pipeline import MemoryPipeline
from tests.support.reference import call_views
from tests.support.scenarios import TEAM_OF_QUEUE, deliveries, scenarios
from tests.support.small_center import SETTINGS

KEEP = ("outcome", "wait_seconds", "queue_id", "team", "fcr", "survey_score", "transferred")


def records(pipe: MemoryPipeline) -> dict[str, dict[str, Any]]:
    fcr = {cid: row.contrib for rows in pipe.customers.values() for cid, row in rows.items()}
    out = {}
    for cid, state in pipe.calls.items():
        rec = call_record(cid, state.events.values(), state.contrib, fcr.get(cid),
                          SETTINGS.team_of_queue, UNASSIGNED_TEAM)  # fmt: skip
        if rec is not None and rec["outcome"] != "ivr_abandoned":
            out[cid] = rec
    return out


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_calls_record_equals_the_references_view_under_any_delivery(
    data: st.DataObject,
) -> None:
    events = data.draw(scenarios())
    pipe = MemoryPipeline(SETTINGS, random.Random(data.draw(st.integers(0, 1000))))
    for batch in data.draw(deliveries(events)):
        pipe.feed(batch)
    pipe.finish()
    want = call_views(events, team_of_queue=TEAM_OF_QUEUE, short_abandon_seconds=5,
                      fcr_window_hours=1)  # fmt: skip
    got = records(pipe)
    assert set(got) == set(want)
    for cid, rec in got.items():
        mine = {k: rec[k] for k in KEEP} | {"agents": [a["agent_id"] for a in rec["agents"]]}
        assert mine == want[cid], cid


def test_the_filters_keep_what_they_name() -> None:
    rec = {"agents": [{"agent_id": "a1"}], "outcome": "abandoned", "wait_seconds": 31.0,
           "fcr": None}  # fmt: skip
    assert matches(rec, agent="a1", outcome="abandoned", min_wait=30)
    assert not matches(rec, agent="a2")
    assert not matches(rec, min_wait=32)
    assert not matches(rec, outcome="answered")
    assert not matches(rec, fcr="resolved")
    assert not matches({**rec, "wait_seconds": None}, min_wait=0)
