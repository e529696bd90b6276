"""The streaming core equals the batch reference, whatever the delivery."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from services.core.calls import prune
from services.core.kpi import WAIT_BIN_EDGES
from tests.support.memory_pipeline import MemoryPipeline
from tests.support.scenarios import deliveries, scenarios
from tests.support.small_center import SETTINGS, assert_same, expected


def nonzero(buckets: dict[Any, dict[str, int]]) -> dict[Any, dict[str, int]]:
    """Counters as a set of non-zero facts (a row may keep explicit zeros)."""
    return prune(buckets)


def run(
    events: list[dict[str, Any]], batches: list[list[dict[str, Any]]], seed: int
) -> MemoryPipeline:
    pipe = MemoryPipeline(SETTINGS, random.Random(seed))
    for batch in batches:
        pipe.feed(batch)
    pipe.finish()
    return pipe


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_shuffled_duplicated_batched_delivery_matches_reference(data: st.DataObject) -> None:
    events = data.draw(scenarios())
    batches = data.draw(deliveries(events))
    pipe = run(events, batches, data.draw(st.integers(0, 1000)))
    assert_same(pipe.figures(), expected(events))


@hsettings(max_examples=100, deadline=None)
@given(data=st.data())
def test_every_minute_bucket_matches_reference_by_arrival(data: st.DataObject) -> None:
    events = data.draw(scenarios())
    pipe = run(events, data.draw(deliveries(events)), 0)
    assert_same(pipe.figures(by_bucket=True), expected(events, by_bucket=True))


@hsettings(max_examples=100, deadline=None)
@given(data=st.data())
def test_two_different_deliveries_give_identical_counters(data: st.DataObject) -> None:
    events = data.draw(scenarios())
    a = run(events, data.draw(deliveries(events)), 1)
    b = run(events, data.draw(deliveries(events)), 2)
    assert nonzero(a.buckets) == nonzero(b.buckets)


@hsettings(max_examples=100, deadline=None)
@given(data=st.data())
def test_replaying_everything_again_changes_nothing(data: st.DataObject) -> None:
    events = data.draw(scenarios())
    pipe = run(events, data.draw(deliveries(events)), 3)
    before = {k: dict(v) for k, v in pipe.buckets.items()}
    for batch in data.draw(deliveries(events)):
        pipe.feed(batch)
    pipe.finish()
    assert nonzero(pipe.buckets) == nonzero(before)


SL_FIELDS = (
    "answered_within_sl",
    "abandoned_within_sl",
    "service_level",
    "service_level_answered",
    "service_level_offered",
    "service_level_abandons_positive",
)


@hsettings(max_examples=100, deadline=None)
@given(data=st.data())
def test_service_level_at_any_bin_edge_equals_reference_computed_at_that_threshold(
    data: st.DataObject,
) -> None:
    events = data.draw(scenarios())
    sl = data.draw(st.sampled_from(WAIT_BIN_EDGES))
    pipe = run(events, data.draw(deliveries(events)), 4)
    got = pipe.figures(sl_seconds=sl)
    want = expected(events, sl=sl)
    for key, exp in want.items():
        if key[0] not in ("center", "team", "queue"):  # agents have no service level
            continue
        for name in SL_FIELDS:
            assert got[key][name] == exp[name], (key, name, sl)
