"""The deviation alert (kind agent, `avg_talk_seconds_change`) over figures made
by the real pipeline: four weeks of a team's usual calls in one hour, then one
agent rushing its calls in that hour; the evaluator, run at chosen instants,
opens and fires an alert for that agent alone, with talk time as the reason,
and resolves it when the window holds no call of it any more."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from services.alerting.evaluator import Evaluator
from services.core.alert_rules import AlertRule
from services.core.db import make_engine
from services.core.settings import Settings, load_settings
from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.alerts import all_alerts
from tests.support.databases import EXAMPLE_CONFIG, new_database, stack_env
from tests.support.samples import answered_calls
from tests.support.stack import Stack, events_processed, wait_until

pytestmark = pytest.mark.slow
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Yesterday 10:00-11:00 local, whatever the day: the same weekday's hour in each
# of the four weeks before holds the baseline.
HOUR = datetime.combine(datetime.now(SHANGHAI).date() - timedelta(days=1),
                        datetime.min.time(), SHANGHAI) + timedelta(hours=10)  # fmt: skip
USUAL_TALK_S = {"b00": 100, "b01": 98, "b02": 100, "b03": 102}
RULE = AlertRule.model_validate({
    "id": "rushed-calls-test", "field": "avg_talk_seconds_change", "kind": "agent",
    "direction": "below", "thresholds": {"peak": -0.2, "off_peak": -0.2}, "window": "1h",
    "min_calls": 20, "for": "2m", "clear_margin": 0.05,
})  # fmt: skip


@pytest.fixture(scope="module")
def rushed(pg: EmbeddedPostgres, broker: EmbeddedBroker) -> Iterator[tuple[Stack, str]]:
    db = new_database(pg)
    env = stack_env(broker, db, f"devalert{os.getpid()}", CALLKPI_ALERTS__EVALUATE="false")
    s = Stack(env).start()
    events: list[dict[str, Any]] = []
    for week in range(1, 5):
        for agent, talk in USUAL_TALK_S.items():
            events += answered_calls(agent, HOUR - timedelta(weeks=week), talk, 30, f"w{week}")
    for agent, talk in USUAL_TALK_S.items():  # b00 at 60 s a call: 40% below its usual
        events += answered_calls(agent, HOUR, 60 if agent == "b00" else talk, 30, "now")
    before = events_processed(s)
    for i in range(0, len(events), 1000):
        assert s.post(events[i : i + 1000]).json()["rejected"] == []
    assert wait_until(lambda: events_processed(s) >= before + len(events), timeout=90)
    yield s, db
    s.stop()


def _settings(db: str) -> Settings:
    base = load_settings(EXAMPLE_CONFIG, database_url=db)
    alerts = base.alerts.model_copy(update={"rules": [RULE]})
    return base.model_copy(update={"alerts": alerts})


@pytest.fixture
async def evaluator(rushed: tuple[Stack, str]) -> AsyncIterator[Evaluator]:
    engine = make_engine(_settings(rushed[1]))
    async with engine.begin() as conn:
        await conn.execute(sa.text("TRUNCATE webhook_deliveries, alert_transitions, alerts"))
    yield Evaluator(_settings(rushed[1]), engine)
    await engine.dispose()


async def test_the_rushing_agent_alone_gets_a_talk_time_alert_that_fires_after_for(
    rushed: tuple[Stack, str], evaluator: Evaluator
) -> None:
    # the window [10:00, 11:00) holds the whole rushed hour (the minute in
    # progress counts: 10:59 ends it at 11:00)
    opened = HOUR + timedelta(minutes=59)
    await evaluator.evaluate(opened)
    (pending,) = await all_alerts(evaluator)
    assert (pending["kind"], pending["entity_id"], pending["state"]) == ("agent", "b00", "pending")
    assert pending["field"] == "avg_talk_seconds_change"
    assert pending["observed_value"] == pytest.approx(-0.4)  # 60 s against its 100 s
    assert pending["calls_in_window"] == 30
    await evaluator.evaluate(opened + timedelta(minutes=1))  # still pending inside `for`
    done = await evaluator.evaluate(opened + timedelta(minutes=2))
    assert done is not None
    (fired,) = [t for t in done.transitions if t["to"] == "firing"]
    assert fired["alert"]["entity_id"] == "b00"
    assert "avg_talk_seconds_change -0.4" in fired["reason"]
    assert [a["state"] for a in await all_alerts(evaluator)] == ["firing"]
    stack, _ = rushed
    listed = stack.get("/v1/alerts", kind="agent", state="firing").json()["items"]
    assert [(a["entity_id"], a["field"]) for a in listed] == [("b00", "avg_talk_seconds_change")]


async def test_an_hour_later_the_window_holds_no_call_and_the_alert_resolves(
    evaluator: Evaluator,
) -> None:
    opened = HOUR + timedelta(minutes=59)
    for minutes in (0, 2):
        await evaluator.evaluate(opened + timedelta(minutes=minutes))
    later = await evaluator.evaluate(opened + timedelta(hours=2))
    assert later is not None
    (resolved,) = later.transitions
    assert (resolved["to"], resolved["alert"]["entity_id"]) == ("resolved", "b00")
    assert resolved["reason"] == "no calls in the window"
