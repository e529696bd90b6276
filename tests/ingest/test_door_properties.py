"""Events with extreme values, through the real ingest and worker: each is either
refused by index with a reason, or counted; the count never stops; the figures of
what was accepted are the reference's."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.support.reference import reference
from tests.support.stack import Stack, wait_until

_examples = itertools.count()
# Strings as a hostile client sends them: any code point a JSON text can carry
# (lone surrogates cannot be), control characters included, sometimes too long.
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12),
    st.text(st.characters(codec="ascii"), min_size=1, max_size=8),
    st.just("x" * 201),
)
AMOUNTS = st.one_of(
    st.floats(min_value=0, max_value=1e13, allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 5e-324, 0.005, 1e12, 1e12 + 1, 1e17, 1e300]),
    st.integers(0, 2**63),
)
CALLERS = st.one_of(TEXT, st.sampled_from(["+8613800000001", "0", "", "anonymous", "Private"]))
FIELDS = ["offered", "answered", "abandoned", "timed_out", "handled", "aht_seconds", "sales",
          "sales_amount", "surveys", "satisfied", "complaints", "fcr_candidates",
          "fcr_unidentified", "transfers"]  # fmt: skip


def instants(base: datetime) -> st.SearchStrategy[str]:
    normal = st.integers(0, 3000).map(lambda s: (base + timedelta(seconds=s)).isoformat())
    outliers = st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "1969-12-31T23:59:59Z",
            "9999-12-31T20:00:00-01:00",
            (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        ]
    )
    return st.one_of(normal, normal, normal, outliers)


@st.composite
def hostile_calls(draw: Any, base: datetime, queue: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, 6))):
        # ids scoped to the example (the stack is shared: one call_id is one call),
        # hostile characters and lengths kept
        cid = f"{queue}-" + draw(st.one_of(st.just(f"c{n}"), TEXT))
        agent = draw(st.one_of(st.just("b00"), TEXT))
        at = instants(base)
        offered = {"event_id": f"{queue}-{n}-o", "type": "call.offered", "occurred_at": draw(at),
                   "call_id": cid, "queue_id": draw(st.one_of(st.just(queue), TEXT))}  # fmt: skip
        if draw(st.booleans()):
            offered["customer_id"] = draw(CALLERS)
        events.append(offered)
        if draw(st.booleans()):
            events.append({"event_id": f"{queue}-{n}-a", "type": "call.answered",
                           "occurred_at": draw(at), "call_id": cid, "agent_id": agent})  # fmt: skip
        events.append({"event_id": f"{queue}-{n}-e", "type": "call.ended", "occurred_at": draw(at),
                       "call_id": cid, "ended_by": draw(st.sampled_from(["agent", "customer"]))})  # fmt: skip
        if draw(st.booleans()):
            events.append({"event_id": f"{queue}-" + draw(st.one_of(st.just(f"{n}-d"), TEXT)),
                           "type": "call.disposition", "occurred_at": draw(at), "call_id": cid,
                           "agent_id": agent, "sale_amount": draw(AMOUNTS),
                           "category": draw(TEXT)})  # fmt: skip
    # some events sent twice, some ids reused for other content
    events += draw(st.lists(st.sampled_from(events), max_size=3))
    return events


@hsettings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_extreme_event_is_refused_by_index_or_counted_as_the_reference_counts_it(
    stack: Stack, data: st.DataObject
) -> None:
    n = next(_examples)
    base = datetime(2026, 1, 20, 9, tzinfo=UTC) + timedelta(days=n)
    queue = f"pq{n}"
    events = data.draw(hostile_calls(base, queue))
    r = httpx.post(f"{stack.url}/v1/events", content=json.dumps(events).encode(),
                   headers={"content-type": "application/json"}, timeout=60)  # fmt: skip
    assert r.status_code in (202, 422), r.text
    body = r.json()
    refused = {e["index"] for e in body["rejected"]}
    assert all(isinstance(e["index"], int) and e["error"] for e in body["rejected"]), body
    accepted = [ev for i, ev in enumerate(events) if i not in refused]
    assert body["accepted"] == len(accepted)

    # the figures of the queues the accepted events name, as the reference has them
    want = {k: v for k, v in reference(accepted, team_of_queue={}).items() if k[0] == "queue"}
    lo, hi = base - timedelta(minutes=1), base + timedelta(hours=2)

    def agree() -> list[str]:
        bad = []
        for (_, ident), exp in want.items():
            got = stack.get(f"/v1/kpis/queue/{quote(ident, safe='')}", **{"from": lo.isoformat(),
                                                          "to": hi.isoformat()})  # fmt: skip
            if got.status_code != 200:
                bad.append(f"{ident}: {got.status_code}")
                continue
            fig = got.json()
            bad += [f"{ident} {f}: {fig[f]} != {exp[f]}" for f in FIELDS if fig[f] != exp[f]]
        return bad

    assert wait_until(lambda: not agree(), timeout=30), agree()[:5]
    # and the count goes on
    canary = {"event_id": f"canary-{n}", "type": "call.offered", "occurred_at": base.isoformat(),
              "call_id": f"canary-{n}", "queue_id": f"canary-{n}"}  # fmt: skip
    assert stack.post([canary]).status_code == 202

    def canary_counted() -> bool:
        got = stack.get(f"/v1/kpis/queue/canary-{n}", **{"from": lo.isoformat(),
                                                         "to": hi.isoformat()})  # fmt: skip
        return got.status_code == 200 and got.json()["offered"] == 1

    assert wait_until(canary_counted, timeout=30)
