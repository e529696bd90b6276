"""Any id ingest accepts can be read back: URL-encoded, an id may hold a slash,
a question mark, a hash, a percent sign, blanks or any Unicode."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.support.stack import Stack, wait_until

IDS = ["SIP/1001", "Local/1001@from-queue/n", "a?b", "a#b", "100%", " billing ", "账务 / 二线"]  # fmt: skip
RANGE = {"from": "2026-01-25T00:00:00Z", "to": "2026-01-26T00:00:00Z"}


@pytest.mark.parametrize("ident", IDS)
def test_an_accepted_id_is_readable_at_its_encoded_path(stack: Stack, ident: str) -> None:
    cid = f"ids-{IDS.index(ident)}"
    events = [
        {"event_id": f"{cid}-o", "type": "call.offered", "occurred_at": "2026-01-25T09:00:00Z",
         "call_id": cid, "queue_id": ident},
        {"event_id": f"{cid}-a", "type": "call.answered", "occurred_at": "2026-01-25T09:00:05Z",
         "call_id": cid, "agent_id": ident},
    ]  # fmt: skip
    assert stack.post(events).status_code == 202
    for kind in ("queue", "agent"):
        path = f"/v1/kpis/{kind}/{quote(ident, safe='')}"

        def answered(path: str = path) -> bool:
            r = stack.get(path, **RANGE)
            return r.status_code == 200 and r.json()["answered"] == 1

        assert wait_until(answered, timeout=30), stack.get(path, **RANGE).text
        r = stack.get(f"{path}/intervals", granularity="1h", **RANGE)
        assert r.status_code == 200, r.text
        assert sum(i["answered"] for i in r.json()["intervals"]) == 1
