"""Hostile parameters get a 4xx that names them, never a 500: numbers past what
Postgres holds, dates out of any calendar, control characters in ids. And the
OpenAPI document describes the error bodies the API sends."""

from __future__ import annotations

import httpx
import pytest

from tests.support.stack import Stack

BIG = "9223372036854775808"  # 2**63: one past Postgres' bigint
RANGE = "to=2026-01-01T00:00:00Z"

CASES = [
    (f"/v1/alerts/{BIG}", 422, "alert_id"),
    (f"/v1/alerts?before={BIG}", 422, "before"),
    (f"/v1/periods/2026-10/agents?version={BIG}", 422, "version"),
    (f"/v1/periods/2026-10/versions/{BIG}/diff", 422, "version"),
    (f"/v1/kpis/center/all?from=0001-01-01T00:00:00%2B01:00&{RANGE}", 422,
     "from: must lie between 1970-01-01 and 9000-01-01"),
    ("/v1/kpis/center/all?from=2026-01-01T00:00:00Z&to=9999-12-31T20:00:00-01:00", 422,
     "to: must lie between 1970-01-01 and 9000-01-01"),
    ("/v1/periods/0001-01", 404, "the year must lie between 1970 and 8999"),
    # reports take local dates: the calendar's edges are refused, not overflowed
    ("/v1/reports/center/all?from=0001-01-01&to=2026-01-01", 422,
     "from: must lie between 1970-01-01 and 9000-01-01"),
    ("/v1/reports/center/all?from=2026-01-01&to=9999-12-31", 422,
     "to: must lie between 1970-01-01 and 9000-01-01"),
    ("/v1/reports/center/all?from=2026-13-01&to=2026-12-02", 422,
     "from: not a date (YYYY-MM-DD): '2026-13-01'"),
    ("/v1/reports/queue/a%00b?from=2026-12-01&to=2026-12-02", 422,
     "'entity_id': the parameter's value contains a control character"),
    ("/v1/kpis/queue/a%00b", 422, "'entity_id': the parameter's value contains a control character (U+0000 at position 1)"),
    ("/v1/alerts?rule=a%00", 422, "'rule': the parameter's value contains a control character"),
    ("/v1/stream?entity=queue:%00", 422, "'entity': the parameter's value contains a control character"),
    ("/v1/kpis/team?window=15m&x%01=1", 422, "the parameter's name contains a control character (U+0001"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "status", "message"), CASES)
def test_a_hostile_parameter_is_refused_naming_it_not_a_500(
    stack: Stack, path: str, status: int, message: str
) -> None:
    r = httpx.get(f"{stack.url}{path}", timeout=30)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]


def test_the_openapi_document_describes_the_422_bodies_the_api_sends(stack: Stack) -> None:
    doc = stack.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["Problem"]["required"] == ["detail"]
    kpis = doc["paths"]["/v1/kpis/{kind}/{entity_id}"]["get"]["responses"]["422"]
    assert kpis["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    ingest = doc["paths"]["/v1/events"]["post"]["responses"]
    for status in ("202", "413", "422", "503"):
        ref = ingest[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/IngestResult"
    # and a real 422 has that shape
    body = stack.get("/v1/kpis/center/all", window="3 weeks").json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
