"""Tokens and scopes on a real stack: no token or an unknown one is 401, a token
without the scope is 403, neither leaks data; the payroll CSV carries manual items
and scores computed at close; every close, upload and payroll read is audited."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from services.core.auth import token_hash
from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.databases import new_database, stack_env
from tests.support.stack import Stack, post_and_wait

pytestmark = pytest.mark.slow
SHANGHAI = ZoneInfo("Asia/Shanghai")
TODAY = datetime.now(SHANGHAI).date()
TOKENS = {
    "ops": ("ck_admin-token-for-tests", ["admin"]),
    "payroll-export": ("ck_payroll-token-for-tests", ["payroll"]),
    "wallboard": ("ck_read-token-for-tests", ["read"]),
    "pbx": ("ck_ingest-token-for-tests", ["ingest"]),
}


def day(offset: int) -> date:
    return TODAY + timedelta(days=offset)


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][0]}"}


@pytest.fixture(scope="module")
def secured(pg: EmbeddedPostgres, broker: EmbeddedBroker) -> Iterator[tuple[Stack, str]]:
    db = new_database(pg)
    tokens = [{"name": n, "sha256": token_hash(t), "scopes": s} for n, (t, s) in TOKENS.items()]
    ranges = [{"id": "past", "from": str(day(-10)), "to": str(day(-5))}]
    env = stack_env(broker, db, "secured", CALLKPI_AUTH__TOKENS=json.dumps(tokens),
                    CALLKPI_PERIODS__CALENDAR="explicit",
                    CALLKPI_PERIODS__RANGES=json.dumps(ranges))  # fmt: skip
    s = Stack(env, token=TOKENS["ops"][0]).start()
    yield s, db
    s.stop()


def _calls(start: datetime, agents: dict[str, int]) -> list[dict[str, Any]]:
    """Calls on the billing queue answered by roster agents, `n` each."""
    out: list[dict[str, Any]] = []
    i = 0
    for agent, n in agents.items():
        for _ in range(n):
            cid, t0 = f"sec-{i}", start + timedelta(seconds=30 * i)
            base = {"call_id": cid}
            out += [
                {**base, "event_id": f"{cid}-o", "type": "call.offered",
                 "occurred_at": t0.isoformat(), "queue_id": "billing"},
                {**base, "event_id": f"{cid}-a", "type": "call.answered", "agent_id": agent,
                 "occurred_at": (t0 + timedelta(seconds=4)).isoformat()},
                {**base, "event_id": f"{cid}-e", "type": "call.ended", "ended_by": "agent",
                 "occurred_at": (t0 + timedelta(seconds=90)).isoformat()},
            ]  # fmt: skip
            i += 1
    return out


@pytest.fixture(scope="module")
def closed(secured: tuple[Stack, str]) -> dict[str, Any]:
    stack, _ = secured
    t0 = datetime.combine(day(-8), datetime.min.time(), SHANGHAI) + timedelta(hours=10)
    post_and_wait(stack, _calls(t0, {"b00": 6, "b01": 4}), "billing",
                  (t0, t0 + timedelta(minutes=10)), offered=10, in_queue=0)  # fmt: skip
    upload = "agent_id,qa_score,complaints_city\nb00,92,\nb01,,1\n"
    r = httpx.post(f"{stack.url}/v1/periods/past/manual-items", content=upload.encode(),
                   headers={**bearer("ops"), "Content-Type": "text/csv"})  # fmt: skip
    assert r.status_code == 200 and r.json()["stored"] == 2, r.text
    # the body's `by` is ignored with tokens on: a version is made by the token
    r = stack.post_json("/v1/periods/past/close", {"by": "someone-else"})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


PROTECTED = [
    ("GET", "/v1/periods"),
    ("GET", "/v1/periods/past/agents"),
    ("GET", "/v1/kpis/center/all"),
    ("GET", "/v1/alerts"),
    ("GET", "/v1/stream?kind=team"),
    ("GET", "/metrics"),
    ("POST", "/v1/events"),
    ("POST", "/v1/periods/past/close"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_no_token_or_an_unknown_one_is_401_with_no_data(
    secured: tuple[Stack, str], closed: dict[str, Any], method: str, path: str
) -> None:
    stack, _ = secured
    for headers in ({}, {"Authorization": "Bearer ck_not-a-token"}, {"Authorization": "Basic x"}):
        r = httpx.request(method, f"{stack.url}{path}", headers=headers, json=[])
        assert r.status_code == 401, (path, headers, r.text)
        assert r.json().keys() == {"detail"} and "b00" not in r.text
        assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("token", "method", "path"),
    [
        ("wallboard", "GET", "/v1/periods/past/agents"),  # read is not payroll
        ("pbx", "GET", "/v1/kpis/center/all"),
        ("pbx", "GET", "/v1/stream?kind=team"),
        ("wallboard", "POST", "/v1/events"),
        ("payroll-export", "POST", "/v1/periods/past/close"),  # payroll reads, admin closes
        ("payroll-export", "POST", "/v1/periods/past/restate"),
        ("payroll-export", "POST", "/v1/periods/past/manual-items"),
    ],
)
def test_a_token_without_the_scope_is_403_with_no_data(
    secured: tuple[Stack, str], closed: dict[str, Any], token: str, method: str, path: str
) -> None:
    stack, _ = secured
    r = httpx.request(method, f"{stack.url}{path}", headers=bearer(token), json={"reason": "x"})
    assert r.status_code == 403, r.text
    assert list(r.json()) == ["detail"]
    assert r.json()["detail"].startswith(f"token {token!r} lacks the ")
    assert "b00" not in r.text


def test_a_window_answered_from_memory_is_still_refused_to_callers_without_the_read_scope(
    secured: tuple[Stack, str], closed: dict[str, Any]
) -> None:
    """Cached window reads are answered before FastAPI's routing
    (services/api/cache_hits.py): the same tokens are refused there too."""
    stack, _ = secured
    url = f"{stack.url}/v1/kpis/center/all?window=1h"
    for _ in range(2):  # read, then answered from memory
        assert httpx.get(url, headers=bearer("wallboard")).status_code == 200
    refused = [({}, 401), ({"Authorization": "Bearer ck_not-a-token"}, 401),
               (bearer("pbx"), 403), (bearer("payroll-export"), 403)]  # fmt: skip
    for headers, status in refused:
        r = httpx.get(url, headers=headers)
        assert (r.status_code, list(r.json())) == (status, ["detail"]), (headers, r.text)
    assert httpx.get(url, headers=bearer("ops")).status_code == 200  # admin reads too


def test_each_scope_opens_its_own_endpoints(
    secured: tuple[Stack, str], closed: dict[str, Any]
) -> None:
    stack, _ = secured
    assert (
        httpx.get(
            f"{stack.url}/v1/periods/past/agents", headers=bearer("payroll-export")
        ).status_code
        == 200
    )
    assert (
        httpx.get(f"{stack.url}/v1/kpis/center/all", headers=bearer("wallboard")).status_code == 200
    )
    assert httpx.get(f"{stack.url}/metrics", headers=bearer("wallboard")).status_code == 200
    with httpx.stream("GET", f"{stack.url}/v1/stream", params={"kind": "team"},
                      headers=bearer("wallboard"), timeout=30) as feed:  # fmt: skip
        assert feed.status_code == 200
        assert next(feed.iter_lines()).startswith("retry:")
    # the pages hold no figures: they load without a token, and common.js asks for one
    for path in ("/wallboard", "/reports", "/reports/calls"):
        page = httpx.get(f"{stack.url}{path}")
        assert page.status_code == 200 and "b00" not in page.text, path
        assert '<script src="/static/common.js" defer></script>' in page.text, path
    common = httpx.get(f"{stack.url}/static/common.js")
    assert common.status_code == 200 and 'id: "login"' in common.text
    state = {"event_id": "sec-state", "type": "agent.state", "agent_id": "b05",
             "state": "available", "occurred_at": datetime.now(SHANGHAI).isoformat()}  # fmt: skip
    r = httpx.post(f"{stack.url}/v1/events", headers=bearer("pbx"), json=[state])
    assert r.status_code == 202, r.text
    assert httpx.get(f"{stack.url}/healthz").status_code == 200  # liveness stays open


def test_close_records_the_token_name_not_the_name_claimed_in_the_body(
    closed: dict[str, Any],
) -> None:
    assert closed["created_by"] == "ops"


def test_payroll_csv_carries_manual_items_and_scores_computed_at_close(
    secured: tuple[Stack, str], closed: dict[str, Any]
) -> None:
    stack, _ = secured
    r = httpx.get(f"{stack.url}/v1/periods/past/agents", params={"format": "csv"},
                  headers=bearer("payroll-export"))  # fmt: skip
    rows = {r["agent_id"]: r for r in csv.DictReader(io.StringIO(r.text))}
    b00, b01 = rows["b00"], rows["b01"]
    assert (b00["scorecard"], b01["scorecard"], rows["s00"]["scorecard"]) == (
        "customer_service", "customer_service", "sales")  # fmt: skip
    # QA uploaded for b00 only: b00 scores its 92, b01 was not sampled (missing: base)
    assert (b00["manual.qa_score"], b00["score.quality"]) == ("92.0", "92.0")
    assert (b01["manual.qa_score"], b01["score.quality"]) == ("", "100.0")
    # answered 6 and 4 of the billing/tech agents' best 6: 100 and 4 × 100 / 6
    assert (b00["score.calls_answered"], b01["score.calls_answered"]) == ("100.0", "66.67")
    # one complaint escalated to the city: −5; no schedule: no absence, attendance
    # not scored; no surveys: satisfaction skipped
    assert (b01["penalty.complaints"], b00["penalty.complaints"]) == ("5.0", "0.0")
    assert (b01["penalty.absences"], b01["score.attendance"]) == ("0.0", "")
    assert b00["score.satisfaction"] == "" and b00["score_total"] != ""
    # a roster agent with no calls at all: relative score 0 of 6
    assert rows["b02"]["score.calls_answered"] == "0.0"


def test_bad_manual_items_are_refused_whole_and_late_ones_show_as_adjustments(
    secured: tuple[Stack, str], closed: dict[str, Any]
) -> None:
    stack, _ = secured
    url = f"{stack.url}/v1/periods/past/manual-items"
    bad = "agent_id,qa_score\nb00,85\nnobody,70\nb01,eighty\n"
    r = httpx.post(url, content=bad.encode(), headers=bearer("ops"))
    assert r.status_code == 422
    assert r.json()["problems"] == [
        "line 3, column 1: agent 'nobody' is not in the roster",
        "line 4, column 2 (qa_score): 'eighty' is not a number",
    ]
    stored = httpx.get(url, headers=bearer("payroll-export")).json()["agents"]
    assert stored["b00"] == {"qa_score": 92.0}  # b00's 85 on line 2 was not taken either

    r = httpx.post(url, content=b"agent_id,qa_score\nb00,85\n", headers=bearer("ops"))
    assert r.status_code == 200
    items = stack.get("/v1/periods/past/adjustments").json()["items"]
    changed = {(i["agent_id"], i["field"]): (i["closed"], i["current"]) for i in items}
    assert changed[("b00", "manual.qa_score")] == (92.0, 85.0)
    assert changed[("b00", "score.quality")] == (92.0, 85.0)
    closed_row = stack.get("/v1/periods/past/agents/b00").json()
    assert closed_row["version"] == 1 and closed_row["manual.qa_score"] == 92.0


def test_close_uploads_and_payroll_reads_are_audited_with_the_token_name(
    secured: tuple[Stack, str], closed: dict[str, Any]
) -> None:
    stack, db = secured
    r = httpx.get(f"{stack.url}/v1/periods/past/agents/b00", headers=bearer("payroll-export"))
    assert r.status_code == 200

    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(db.replace("postgresql+asyncpg", "postgresql"))
        try:
            return list(await conn.fetch("SELECT actor, action, period FROM audit_log ORDER BY id"))
        finally:
            await conn.close()

    rows = asyncio.run(fetch())
    seen = [(r["actor"], r["action"], r["period"]) for r in rows]
    assert seen[:2] == [("ops", "manual_items", "past"), ("ops", "close", "past")]
    assert ("payroll-export", "read_agent", "past") in seen
    # refused requests never reach the endpoint, so they are not payroll reads
    assert not any(actor in ("wallboard", "pbx") for actor, _, _ in seen)
