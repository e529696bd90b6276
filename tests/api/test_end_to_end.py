"""Events posted over HTTP reach the read API and /metrics with the reference's values."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.databases import new_database, stack_env
from tests.support.simulated import SETTINGS, api_figures, expected, mismatches, post_all, simulated
from tests.support.stack import Stack, events_processed, wait_until


@pytest.fixture(scope="module")
def stack(pg: EmbeddedPostgres, broker: EmbeddedBroker) -> Iterator[Stack]:
    """A stack of its own: the center's figures over the simulated hour hold every
    call of the database in it, and other tests post calls at those minutes too
    (run after tests/api/test_live.py on the shared stack, the center counted 3
    calls more than the reference)."""
    s = Stack(stack_env(broker, new_database(pg), f"e2e{os.getpid()}")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def simulated_hour(stack: Stack) -> dict[str, Any]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # 35 minutes of arrivals ending 20 minutes ago: every call, and the shift's
    # final logouts, are over before now, so no agent state is still open; and it
    # all lies inside the live 1h window.
    start = now - timedelta(minutes=55)
    events = simulated(11, 35, start)
    assert max(datetime.fromisoformat(e["occurred_at"]) for e in events) < now
    post_all(stack, events, seed=1)
    want = expected(events)
    lo = (start - timedelta(minutes=1)).isoformat()
    hi = (now + timedelta(minutes=1)).isoformat()

    def converged() -> bool:
        return not mismatches(api_figures(stack, list(want), lo, hi), want)

    # Poll until the worker has caught up; on timeout the test's assertion shows the diff.
    wait_until(converged, timeout=60)
    return {"events": events, "want": want, "from": lo, "to": hi}


def test_simulated_center_posted_over_http_matches_reference_for_every_entity(
    stack: Stack, simulated_hour: dict[str, Any]
) -> None:
    want = simulated_hour["want"]
    kinds = {k for k, _ in want}
    assert kinds == {"center", "team", "queue", "agent", "agent_queue"}  # by=queue too
    assert want[("center", "all")]["offered"] > 200
    got = api_figures(stack, list(want), simulated_hour["from"], simulated_hour["to"])
    assert mismatches(got, want) == []


def test_posting_the_same_events_again_changes_no_figure(
    stack: Stack, simulated_hour: dict[str, Any]
) -> None:
    before = events_processed(stack)
    events = simulated_hour["events"]
    post_all(stack, events, seed=2)
    assert wait_until(lambda: events_processed(stack) >= before + len(events), timeout=60)
    want = simulated_hour["want"]
    got = api_figures(stack, list(want), simulated_hour["from"], simulated_hour["to"])
    assert mismatches(got, want) == []


def test_metrics_gauges_equal_the_api_window(stack: Stack, simulated_hour: dict[str, Any]) -> None:
    text = stack.get("/metrics").text
    api = stack.get("/v1/kpis/center/all", window="1h").json()
    wanted = {
        'callkpi_answer_rate{id="all",kind="center",window="1h"}': api["answer_rate"],
        'callkpi_asa_seconds{id="all",kind="center",window="1h"}': api["asa_seconds"],
        'callkpi_aht_seconds{id="all",kind="center",window="1h"}': api["aht_seconds"],
        'callkpi_service_level{id="all",kind="center",window="1h"}': api["service_level"],
    }
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("callkpi_"))
    for name, value in wanted.items():
        assert value is not None
        assert math.isclose(float(samples[name]), value, rel_tol=1e-9), name
    # the 1h window covers the whole simulated stretch, so it equals the reference too
    ref = simulated_hour["want"][("center", "all")]
    assert math.isclose(api["answer_rate"], ref["answer_rate"], rel_tol=1e-12)
    assert float(samples["callkpi_processing_lag_seconds"]) >= 0


def test_intervals_add_up_to_the_whole_range(stack: Stack, simulated_hour: dict[str, Any]) -> None:
    lo, hi = simulated_hour["from"], simulated_hour["to"]
    r = stack.get("/v1/kpis/center/all/intervals", **{"from": lo, "to": hi, "granularity": "15m"})
    assert r.status_code == 200, r.text
    body = r.json()
    total = stack.get("/v1/kpis/center/all", **{"from": lo, "to": hi}).json()
    assert sum(i["offered"] for i in body["intervals"]) == total["offered"]
    assert sum(i["handled"] for i in body["intervals"]) == total["handled"]
    inner = [datetime.fromisoformat(i["from"]) for i in body["intervals"][1:]]
    assert all(t.minute % 15 == 0 for t in inner)


def test_list_endpoint_covers_every_roster_team(
    stack: Stack, simulated_hour: dict[str, Any]
) -> None:
    body = stack.get("/v1/kpis/team", window="1h").json()
    ids = {item["id"] for item in body["items"]}
    assert {t.id for t in SETTINGS.teams} <= ids
    assert body["definitions"]["service_level_seconds"] == 20


@pytest.mark.parametrize(
    ("path", "params", "fragment"),
    [
        ("/v1/kpis/center/all", {"window": "7m"}, "window: must be one of"),
        ("/v1/kpis/center/all", {"from": "2026-11-20T09:00:00+08:00"}, "both are required"),
        (
            "/v1/kpis/center/all",
            {"from": "2026-11-20T09:00:30Z", "to": "2026-11-20T10:00:00Z"},
            "aligned",
        ),
        (
            "/v1/kpis/center/all",
            {"from": "2026-11-20T09:00:00", "to": "2026-11-20T10:00:00Z"},
            "UTC offset",
        ),
        (
            "/v1/kpis/center/all",
            {"from": "2026-11-20T10:00:00Z", "to": "2026-11-20T09:00:00Z"},
            "after from",
        ),
        ("/v1/kpis/nonsense/x", {}, "kind"),
        (
            "/v1/kpis/center/all/intervals",
            {"from": "2026-11-20T00:00:00Z", "to": "2026-11-21T00:00:00Z", "granularity": "5m"},
            "granularity",
        ),
    ],
)
def test_bad_parameters_get_422_saying_what_is_wrong(
    stack: Stack, path: str, params: dict[str, str], fragment: str
) -> None:
    r = stack.get(path, **params)
    assert r.status_code == 422
    assert fragment in r.json()["detail"]


def test_unknown_entity_is_404(stack: Stack) -> None:
    assert stack.get("/v1/kpis/agent/nobody-by-this-name").status_code == 404
    assert stack.get("/v1/kpis/center/other").status_code == 404
    # a roster queue is always known, with or without calls
    r = stack.get("/v1/kpis/queue/internet", window="15m")
    assert r.status_code == 200
