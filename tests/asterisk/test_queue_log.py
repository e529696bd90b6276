"""queue_log lines to events, without a broker: every event kind of the hand
fixture (tests/asterisk/hand.queue_log), durations that equal the logged ones,
malformed lines reported in place, out-of-order input, database exports, and
the two ways of counting a call that visits two queues."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.asterisk.importer import Reorder
from services.asterisk.queue_log import (
    UNKNOWN_AGENT,
    Line,
    Malformed,
    Mapper,
    agent_id,
    read_lines,
)
from services.core.agents import compact_state, merge_states
from services.core.events import normalize

HERE = Path(__file__).parent
HAND = HERE / "hand.queue_log"
SHANGHAI = ZoneInfo("Asia/Shanghai")
T = 1793581200  # 2026-11-02 09:00:00 +08:00, the fixture's first call


def mapped(text: str, mapper: Mapper | None = None) -> tuple[list[dict[str, Any]], Mapper]:
    m = mapper or Mapper()
    out: list[dict[str, Any]] = []
    for item in read_lines(io.StringIO(text), SHANGHAI):
        out += m.feed(item)
    return out, m


def at(e: dict[str, Any]) -> float:
    return datetime.fromisoformat(e["occurred_at"]).timestamp()


def of_call(events: list[dict[str, Any]], call: str) -> dict[str, dict[str, Any]]:
    return {e["type"]: e for e in events if e.get("call_id") == call}


def test_durations_are_the_logged_ones_whatever_the_line_times_say() -> None:
    events, _ = mapped(HAND.read_text())
    c1 = of_call(events, "1793581200.1@support")
    # CONNECT: hold 10 → answered 10 s after ENTERQUEUE; COMPLETECALLER: talk 120
    assert at(c1["call.answered"]) - at(c1["call.offered"]) == 10
    assert at(c1["call.ended"]) - at(c1["call.answered"]) == 120
    assert c1["call.ended"]["ended_by"] == "customer"
    assert c1["call.offered"]["customer_id"] == "13800000001"
    # the ring before the answer: data3 = 3 s, at the answering agent
    rings = [
        e
        for e in events
        if e["type"] == "call.ringing" and e["call_id"] == c1["call.answered"]["call_id"]
    ]
    assert [(e["agent_id"], at(c1["call.answered"]) - at(e)) for e in rings] == [
        ("1001", 9.0),
        ("1002", 3.0),
    ]
    # ABANDON: waittime in data3
    c2 = of_call(events, "1793581220.2@support")
    assert at(c2["call.ended"]) - at(c2["call.offered"]) == 30
    assert c2["call.ended"]["ended_by"] == "customer"
    # EXITWITHTIMEOUT, JOINEMPTY: ended by the system; EXITWITHKEY: by the caller
    for call, wait, by, reason in (
        ("1793581240.4@support", 60, "system", "timeout"),
        ("1793581260.5@support", 0, "system", "no_agents"),
        ("1793581400.8@support", 5, "customer", "exit_key"),
    ):
        c = of_call(events, call)
        assert (c["call.ended"]["ended_by"], c["call.ended"]["reason"]) == (by, reason)
        assert at(c["call.ended"]) - at(c["call.offered"]) == wait
    # TRANSFER: transferred and ended by the agent after the logged 60 s
    c6 = of_call(events, "1793581270.6@support")
    assert at(c6["call.transferred"]) - at(c6["call.answered"]) == 60
    assert c6["call.ended"]["ended_by"] == "agent" and c6["call.transferred"]["to"] == "2000"
    # WRAPUPSTART: 15 s of after-call work from the call's end
    c7 = of_call(events, "1793581280.7@support")
    assert at(c7["call.wrapup_ended"]) - at(c7["call.ended"]) == 15
    assert c7["call.answered"]["agent_id"] == "1003"  # SIP/1003 without its technology


def test_agent_states_follow_logins_pauses_and_calls() -> None:
    events, _ = mapped(HAND.read_text())
    states = [(e["agent_id"], e["state"], e.get("reason"), at(e) - T)
              for e in events if e["type"] == "agent.state"]  # fmt: skip
    assert [s for s in states if s[0] == "1004"] == [
        ("1004", "available", None, -100), ("1004", "not_ready", "lunch", 300),
        ("1004", "available", None, 900), ("1004", "logged_out", None, 1000),
    ]  # fmt: skip
    # on a call from its answer to its end, then wrap-up for the logged 15 s
    assert [s[1:] for s in states if s[0] == "1003"] == [
        ("on_call", None, 100), ("available", None, 190),
        ("wrap_up", None, 190), ("available", None, 205),
    ]  # fmt: skip


def test_malformed_lines_are_reported_by_number_and_the_lines_around_them_still_count() -> None:
    events, m = mapped(HAND.read_text())
    assert m.stats.lines == 34
    assert m.stats.malformed == [
        "line 29: 1 fields; a queue_log line has at least 5",
        "line 30: 3 fields; a queue_log line has at least 5",
        "line 31: CONNECT data1: not a number: 'soon'",
        "line 34: 1 fields; a queue_log line has at least 5",  # truncated last line
    ]
    assert dict(m.stats.skipped) == {"QUEUESTART": 1, "CONFIGRELOAD": 1, "unknown event FOOBAR": 1}
    # the lines after the bad ones: 1004's unpause and logoff
    assert [e["state"] for e in events if e.get("agent_id") == "1004"][-2:] == [
        "available", "logged_out",
    ]  # fmt: skip
    assert len({e["event_id"] for e in events}) == len(events) == 43


def test_out_of_order_lines_give_the_same_events_once_reordered() -> None:
    lines = [ln for ln in HAND.read_text().splitlines(keepends=True) if ln.count("|") >= 4]
    expected, _ = mapped("".join(lines))
    shuffled = lines[:]
    # neighbours swapped: a database export sorted by id, not by time
    rnd = random.Random(7)
    for i in range(0, len(shuffled) - 1, 2):
        if rnd.random() < 0.7:
            shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    m, reorder, got = Mapper(), Reorder(60), []
    for item in read_lines(io.StringIO("".join(shuffled)), SHANGHAI):
        for ready in reorder.push(item):
            got += m.feed(ready)
    for ready in reorder.drain():
        got += m.feed(ready)
    key = lambda e: e["event_id"]  # noqa: E731
    assert sorted(got, key=key) == sorted(expected, key=key)


def test_a_database_export_maps_to_the_same_events_and_ids_as_the_file() -> None:
    lines = [ln.rstrip("\n") for ln in HAND.read_text().splitlines() if ln.count("|") >= 4]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["time", "callid", "queuename", "agent", "event", "data1", "data2", "data3",
                "data4", "data5"])  # fmt: skip
    for ln in lines:
        f = ln.split("|")
        local = datetime.fromtimestamp(int(f[0]), SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
        w.writerow([local, *f[1:5], *(f[5:] + [""] * 5)[:5]])
    from_file, _ = mapped("\n".join(lines) + "\n")
    from_csv, m = mapped(buf.getvalue())
    assert m.stats.malformed == ["line 30: CONNECT data1: not a number: 'soon'"]  # header = 1
    assert from_csv == from_file


def test_one_call_through_two_queues_counts_in_each_or_only_in_the_first() -> None:
    text = "".join(ln for ln in HAND.read_text().splitlines(keepends=True) if "1793581400.8" in ln)
    per_queue, _ = mapped(text)
    assert {e["queue_id"] for e in per_queue if e["type"] == "call.offered"} == {"support", "sales"}
    first_only, m = mapped(text, Mapper(call_per_queue=False))
    offered = [e for e in first_only if e["type"] == "call.offered"]
    assert [(e["call_id"], e["queue_id"]) for e in offered] == [("1793581400.8", "support")]
    assert m.stats.skipped["ENTERQUEUE of a call already queued"] == 1
    # answered in the second queue, counted on the call of the first
    assert [e["agent_id"] for e in first_only if e["type"] == "call.answered"] == ["1002"]


def test_a_call_whose_start_is_missing_is_derived_backwards_from_its_end() -> None:
    # a file that begins mid-call: only the COMPLETEAGENT line (hold 12, talk 50)
    events, _ = mapped(f"{T}|c-mid|support|PJSIP/1001|COMPLETEAGENT|12|50|1\n")
    c = of_call(events, "c-mid@support")
    assert at(c["call.offered"]) == T - 62 and at(c["call.answered"]) == T - 50
    assert at(c["call.ended"]) == T


@pytest.mark.parametrize(
    "method",
    [
        "BRIDGE|1a2b3c4d",
        "APP|Voicemail",
        "LINK|PJSIP/1001-0000001a|Local/2000@from-internal-00000002;1",
    ],
)
def test_an_attended_transfer_ends_the_call_after_its_logged_calltime_in_every_form(
    method: str,
) -> None:
    """apps/app_queue.c, log_attended_transfer: ATTENDEDTRANSFER is
    `<method>|holdtime|calltime|origpos`, where the method carries one field
    (BRIDGE, APP) or two (LINK): the durations are read from the end."""
    lines = (
        f"{T}|c-att|support|NONE|ENTERQUEUE||+8613800000001|1\n"
        f"{T + 8}|c-att|support|PJSIP/1001|CONNECT|8|c-att-peer|3\n"
        f"{T + 98}|c-att|support|PJSIP/1001|ATTENDEDTRANSFER|{method}|8|90|1\n"
    )
    events, m = mapped(lines)
    c = of_call(events, "c-att@support")
    assert m.stats.malformed_count == 0
    assert at(c["call.answered"]) - at(c["call.offered"]) == 8
    assert at(c["call.ended"]) - at(c["call.answered"]) == 90
    assert c["call.ended"]["ended_by"] == "agent"
    assert at(c["call.transferred"]) == at(c["call.ended"])


@pytest.mark.parametrize("end", ["COMPLETEAGENT|6|40|1", "COMPLETECALLER|6|40|1"])
def test_an_answer_by_an_agent_the_log_does_not_name_is_still_answered(end: str) -> None:
    """XiVO/Wazo log CONNECT and COMPLETEAGENT with agent NONE (the member
    field of app_queue.c's ast_queue_log is free text there): the call is
    answered and ends after its logged calltime, under agent `unknown`, and no
    agent state is made up for it."""
    lines = (
        f"{T}|c-none|support|NONE|ENTERQUEUE||+8613800000001|1\n"
        f"{T + 6}|c-none|support|NONE|CONNECT|6|c-none-peer|2\n"
        f"{T + 46}|c-none|support|NONE|{end}\n"
        f"{T + 47}|c-none|support|NONE|RINGNOANSWER|1000\n"
    )
    events, m = mapped(lines)
    c = of_call(events, "c-none@support")
    assert m.stats.malformed_count == 0
    assert c["call.answered"]["agent_id"] == UNKNOWN_AGENT
    assert at(c["call.answered"]) - at(c["call.offered"]) == 6
    assert at(c["call.ended"]) - at(c["call.answered"]) == 40
    assert not [e for e in events if e["type"] == "agent.state"]
    assert m.stats.skipped["RINGNOANSWER without an agent"] == 1


def test_a_wrapup_logged_without_call_id_or_queue_is_the_agents_last_call() -> None:
    """WRAPUPSTART is no line app_queue.c writes itself: XiVO/Wazo's dialplan logs
    it through QueueLog() (apps/app_queue.c, queue_log_exec: the arguments as
    given), with call id and queue NONE. It needs only the agent: the wrap-up
    follows that agent's last call's end, for the logged seconds."""
    lines = (
        f"{T}|c-wrap|support|NONE|ENTERQUEUE||+8613800000001|1\n"
        f"{T + 5}|c-wrap|support|Agent/1001|CONNECT|5|c-wrap-peer|2\n"
        f"{T + 65}|c-wrap|support|Agent/1001|COMPLETEAGENT|5|60|1\n"
        f"{T + 66}|NONE|NONE|Agent/1001|WRAPUPSTART|15\n"
        f"{T + 70}|NONE|NONE|Agent/1009|WRAPUPSTART|15\n"
    )
    events, m = mapped(lines)
    c = of_call(events, "c-wrap@support")
    assert m.stats.malformed_count == 0
    assert at(c["call.wrapup_ended"]) - at(c["call.ended"]) == 15
    assert c["call.wrapup_ended"]["agent_id"] == "1001"
    # an agent with no call seen: nothing to attach it to, counted as skipped
    assert m.stats.skipped["WRAPUPSTART without a call id, no call of its agent"] == 1
    assert not [e for e in events if e.get("agent_id") == "1009"]


@pytest.mark.parametrize(
    ("line", "reason", "by", "wait"),
    [
        # apps/app_queue.c, queue_exec: pos|opos|waittime
        ("ABANDON|1|1|25", "abandoned", "customer", 25),
        ("EXITWITHTIMEOUT|1|1|60", "timeout", "system", 60),
        ("EXITEMPTY|1|1|12", "agents_left", "system", 12),
        # key|pos|opos|waittime; key 9 is mapped by asterisk.exit_keys, 5 is not
        ("EXITWITHKEY|9|1|1|8", "voicemail", "customer", 8),
        ("EXITWITHKEY|5|1|1|8", "exit_key", "customer", 8),
        # pos|opos|waittime|info (QueueWithdrawCaller, Asterisk 16.25+)
        ("WITHDRAW|1|1|40|cb-42", "callback", "system", 40),
        # XiVO/Wazo's QueueLog(): no data, the wait runs from ENTERQUEUE (30 s)
        ("LEAVEEMPTY", "agents_left", "system", 30),
        ("LEAVEUNAVAIL", "agents_left", "system", 30),
    ],
)
def test_every_way_out_of_the_queue_ends_the_call_with_its_reason(
    line: str, reason: str, by: str, wait: float
) -> None:
    events, m = mapped(
        f"{T}|c-out|support|NONE|ENTERQUEUE||+8613800000001|1\n{T + 30}|c-out|support|NONE|{line}\n",
        Mapper(exit_keys={"9": "voicemail"}),
    )
    c = of_call(events, "c-out@support")
    assert m.stats.malformed_count == 0
    assert (c["call.ended"]["reason"], c["call.ended"]["ended_by"]) == (reason, by)
    assert at(c["call.ended"]) - at(c["call.offered"]) == wait
    if line.startswith("EXITWITHKEY"):
        assert c["call.ended"]["key"] == line.split("|")[1]


@pytest.mark.parametrize(
    ("verb", "reason"),
    [("CLOSED", "closed"), ("FULL", "full"), ("DIVERT_CA_RATIO", "diverted"),
     ("DIVERT_HOLDTIME", "diverted"), ("JOINEMPTY", "no_agents"), ("JOINUNAVAIL", "no_agents")],
)  # fmt: skip
def test_a_call_refused_at_the_queues_door_is_offered_and_ended_at_once(
    verb: str, reason: str
) -> None:
    """Wazo logs these with QueueLog() and no ENTERQUEUE (the call never joined):
    CLOSED from the queue's schedule, DIVERT_* from wazo-agid's check_diversion,
    FULL/JOINEMPTY/JOINUNAVAIL from app_queue.c's QUEUESTATUS. They were skipped
    (DIVERT_*) or counted as timed out."""
    events, m = mapped(f"{T}|c-door|support|NONE|{verb}\n")
    c = of_call(events, "c-door@support")
    assert m.stats.malformed_count == 0 and not m.stats.skipped
    assert c["call.ended"]["reason"] == reason and at(c["call.ended"]) == at(c["call.offered"]) == T


def test_control_characters_in_a_key_or_a_pause_reason_do_not_cost_the_event() -> None:
    """The contract refuses control characters in every string; a garbled log
    field must lose them, not the call's end or the agent's pause."""
    events, _ = mapped(
        f"{T}|c-ctl|support|NONE|ENTERQUEUE||+8613800000001|1\n"
        f"{T + 8}|c-ctl|support|NONE|EXITWITHKEY|\x015|1|1|8\n"
        f"{T + 9}|NONE|support|PJSIP/1001|PAUSE|lun\x07ch\n"
    )
    for e in events:
        normalize(e, b"k")  # raises EventError if the contract refuses it
    ended = of_call(events, "c-ctl@support")["call.ended"]
    assert ended["key"] == "5"
    assert [e["reason"] for e in events if e["type"] == "agent.state"] == ["lunch"]


def test_wazos_leaveempty_after_asterisks_exitempty_is_one_end() -> None:
    """wazo-call-logd's fill_leaveempty_calls reads EXITEMPTY then LEAVEEMPTY 17 ms
    later for one call; with no data, LEAVEEMPTY once ended the call at its entry."""
    events, m = mapped(
        f"{T}|c-le|support|NONE|ENTERQUEUE||+8613800000001|1\n"
        f"{T + 12}|c-le|support|NONE|EXITEMPTY|1|1|12\n"
        f"{T + 12.017}|c-le|support|NONE|LEAVEEMPTY\n"
    )
    ends = [e for e in events if e["type"] == "call.ended"]
    assert len(ends) == 1 and at(ends[0]) == T + 12
    assert m.stats.skipped["LEAVEEMPTY of a call already ended"] == 1


def state_seconds(events: list[dict[str, Any]], agent: str) -> dict[str, float]:
    """The agent's time per state as the worker stores it (services/core/agents.py)."""
    mine = [compact_state({**e, "ts": round(at(e) * 1_000_000)})
            for e in events if e["type"] == "agent.state" and e["agent_id"] == agent]  # fmt: skip
    change = merge_states([], mine, 12 * 3600 * 1_000_000)
    assert change is not None
    out: dict[str, float] = {}
    for _eid, start, end, state, _reason in change.added:
        out[state] = out.get(state, 0.0) + (end - start) / 1_000_000
    return out


def test_a_logged_wrapup_is_that_many_seconds_of_wrap_up_state() -> None:
    """The COMPLETE line makes the agent available at the call's end and the
    WRAPUPSTART line's wrap-up starts at that same instant: it must be the state
    in force there, for the whole 15 s (it used to start 1 µs later: 14.999999)."""
    lines = (
        f"{T}|c-acw|support|NONE|ENTERQUEUE||+8613800000001|1\n"
        f"{T + 5}|c-acw|support|Agent/1001|CONNECT|5|c-acw-peer|2\n"
        f"{T + 65}|c-acw|support|Agent/1001|COMPLETEAGENT|5|60|1\n"
        f"{T + 66}|c-acw|support|Agent/1001|WRAPUPSTART|15\n"
        f"{T + 100}|NONE|NONE|Agent/1001|AGENTLOGOFF|\n"
    )
    events, _ = mapped(lines)
    assert state_seconds(events, "1001") == {"on_call": 60.0, "wrap_up": 15.0, "available": 20.0}


def test_an_unpause_after_a_logoff_does_not_log_the_agent_back_in() -> None:
    """Wazo logs UNPAUSEALL (apps/app_queue.c, set_member_paused: queue and call
    id NONE) right after AGENTCALLBACKLOGOFF; the agent is gone, and an available
    state from it ran to max_state_hours in every range after the logoff."""
    lines = (
        f"{T}|NONE|NONE|Agent/1001|AGENTCALLBACKLOGIN|\n"
        f"{T + 600}|NONE|NONE|Agent/1001|AGENTCALLBACKLOGOFF|\n"
        f"{T + 601}|NONE|NONE|Agent/1001|UNPAUSEALL|\n"
        f"{T + 602}|NONE|NONE|Agent/1001|PAUSEALL|lunch\n"
        f"{T + 900}|NONE|NONE|Agent/1001|AGENTCALLBACKLOGIN|\n"
        f"{T + 960}|NONE|NONE|Agent/1001|UNPAUSEALL|\n"
    )
    events, m = mapped(lines)
    assert [(e["state"], at(e) - T) for e in events] == [
        ("available", 0), ("logged_out", 600), ("available", 900), ("available", 960),
    ]  # fmt: skip
    assert m.stats.skipped["UNPAUSEALL of an agent logged off"] == 1
    assert m.stats.skipped["PAUSEALL of an agent logged off"] == 1


def test_a_checkpoint_keeps_the_last_calls_and_the_logged_off_agents() -> None:
    """The follower resumes from Mapper.state(): a WRAPUPSTART without call id
    after a restart still finds its call, an UNPAUSE still finds its logoff."""
    first, m = mapped(
        f"{T}|c-cp|support|NONE|ENTERQUEUE||+8613800000001|1\n"
        f"{T + 5}|c-cp|support|Agent/1001|CONNECT|5|c-cp-peer|2\n"
        f"{T + 65}|c-cp|support|Agent/1001|COMPLETEAGENT|5|60|1\n"
        f"{T + 66}|NONE|NONE|Agent/1002|AGENTLOGOFF|\n"
    )
    resumed = Mapper()
    resumed.restore(json.loads(json.dumps(m.state())))
    events, m2 = mapped(
        f"{T + 67}|NONE|NONE|Agent/1001|WRAPUPSTART|15\n{T + 68}|NONE|NONE|Agent/1002|UNPAUSE|\n",
        resumed,
    )
    ended = of_call(first, "c-cp@support")["call.ended"]
    assert at(of_call(events, "c-cp@support")["call.wrapup_ended"]) - at(ended) == 15
    assert m2.stats.skipped["UNPAUSE of an agent logged off"] == 1
    # a checkpoint written by earlier versions (open calls only) still loads
    old = Mapper()
    old.restore({"c-open@support": [float(T), None, None]})
    assert old.calls["c-open@support"].entered == T


@pytest.mark.parametrize(
    ("raw", "strip", "want"),
    [("PJSIP/1001", True, "1001"), ("SIP/alice", True, "alice"), ("Agent/7", True, "7"),
     ("Local/1002@from-queue/n", True, "1002"), ("PJSIP/1001", False, "PJSIP/1001"),
     ("Alice Wong", True, "Alice Wong"), ("NONE", True, None)],
)  # fmt: skip
def test_agent_ids_drop_the_channel_technology(raw: str, strip: bool, want: str | None) -> None:
    assert agent_id(raw, strip) == want


def test_event_ids_are_the_same_on_a_second_read() -> None:
    first, _ = mapped(HAND.read_text())
    second, _ = mapped(HAND.read_text())
    assert [e["event_id"] for e in first] == [e["event_id"] for e in second]


def test_a_line_that_is_not_queue_log_says_what_is_wrong() -> None:
    items = list(read_lines(io.StringIO("abc|def|q|a|ENTERQUEUE\n"), SHANGHAI))
    assert isinstance(items[0], Malformed)
    assert "time: neither an epoch nor a timestamp: 'abc'" in str(items[0])
    assert isinstance(next(read_lines(io.StringIO(f"{T}|c|q|a|CONNECT|1|x|2\n"), SHANGHAI)), Line)
