"""Every queue_log verb of every form Asterisk (apps/app_queue.c) and XiVO/Wazo
(QueueLog() in the dialplan, wazo-agid's check_diversion) write, in one
hand-written file imported through the real ingest, broker, worker and Postgres;
each figure below is worked out by hand from the lines.

The file's times are offsets from a base two days before the run, so the data
is never older than the buckets' retention whatever the date."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import ROOT
from tests.support.stack import Stack, wait_until

# (seconds after the base, callid, queue, agent, verb, data...)
LINES: list[tuple[float, str, str, str, str, str]] = [
    (0, "NONE", "every", "PJSIP/2001", "ADDMEMBER", ""),
    (0, "NONE", "NONE", "Agent/2002", "AGENTLOGIN", "PJSIP/2002"),
    (0, "NONE", "NONE", "Agent/2003", "AGENTCALLBACKLOGIN", "2003@agents"),
    (1, "NONE", "NONE", "NONE", "QUEUESTART", ""),
    (2, "NONE", "NONE", "NONE", "CONFIGRELOAD", ""),
    (9, "c-a", "NONE", "NONE", "DID", "4000"),
    # A: rings 2001 (no answer, 3000 ms), 2002 answers after 8 s, talks 100
    (10, "c-a", "every", "NONE", "ENTERQUEUE", "|13900000001|1"),
    (11, "c-a", "every", "NONE", "INFO", "VOLUME|0|0"),
    (14, "c-a", "every", "PJSIP/2001", "RINGNOANSWER", "3000"),
    (15, "c-a", "every", "PJSIP/2001", "RINGCANCELED", "1000"),
    (18, "c-a", "every", "PJSIP/2002", "CONNECT", "8|c-a-peer|2"),
    (118, "c-a", "every", "PJSIP/2002", "COMPLETECALLER", "8|100|1"),
    # B: 2003, wait 5, talk 50, then 10 s of wrap-up logged with its call id
    (20, "c-b", "every", "NONE", "ENTERQUEUE", "|13900000002|2"),
    (25, "c-b", "every", "Agent/2003", "CONNECT", "5|c-b-peer|1"),
    (75, "c-b", "every", "Agent/2003", "COMPLETEAGENT", "5|50|1"),
    (75, "c-b", "every", "Agent/2003", "WRAPUPSTART", "10"),
    # C: answered by an agent the log does not name (Wazo): wait 6, talk 40
    (30, "c-c", "every", "NONE", "ENTERQUEUE", "|13900000003|3"),
    (36, "c-c", "every", "NONE", "CONNECT", "6|c-c-peer|0"),
    (76, "c-c", "every", "NONE", "COMPLETEAGENT", "6|40|1"),
    # D: 2001, wait 4, TRANSFER after 30
    (40, "c-d", "every", "NONE", "ENTERQUEUE", "|13900000004|4"),
    (44, "c-d", "every", "PJSIP/2001", "CONNECT", "4|c-d-peer|1"),
    (74, "c-d", "every", "PJSIP/2001", "TRANSFER", "2000|from-internal|4|30|1"),
    # E: 2003, wait 3, BLINDTRANSFER after 20
    (90, "c-e", "every", "NONE", "ENTERQUEUE", "|13900000005|1"),
    (93, "c-e", "every", "Agent/2003", "CONNECT", "3|c-e-peer|1"),
    (113, "c-e", "every", "Agent/2003", "BLINDTRANSFER", "2000|from-internal|3|20|1"),
    # F, G, H: ATTENDEDTRANSFER in its BRIDGE, APP and LINK forms
    (120, "c-f", "every", "NONE", "ENTERQUEUE", "|13900000006|1"),
    (125, "c-f", "every", "PJSIP/2001", "CONNECT", "5|c-f-peer|1"),
    (150, "c-f", "every", "PJSIP/2001", "ATTENDEDTRANSFER", "BRIDGE|b-1|5|25|1"),
    (130, "c-g", "every", "NONE", "ENTERQUEUE", "|13900000007|2"),
    (134, "c-g", "every", "PJSIP/2002", "CONNECT", "4|c-g-peer|1"),
    (169, "c-g", "every", "PJSIP/2002", "ATTENDEDTRANSFER", "APP|Dial|4|35|1"),
    (160, "c-h", "every", "NONE", "ENTERQUEUE", "|13900000008|1"),
    (166, "c-h", "every", "Agent/2003", "CONNECT", "6|c-h-peer|1"),
    (181, "c-h", "every", "Agent/2003", "ATTENDEDTRANSFER", "LINK|SIP/a-1|SIP/b-2|6|15|1"),
    # 2001's wrap-up after F, logged with call id and queue NONE: 8 s
    (151, "NONE", "NONE", "PJSIP/2001", "WRAPUPSTART", "8"),
    # I, J: abandons after 25 s and after 3 s (short)
    (200, "c-i", "every", "NONE", "ENTERQUEUE", "|13900000009|1"),
    (225, "c-i", "every", "NONE", "ABANDON", "1|1|25"),
    (210, "c-j", "every", "NONE", "ENTERQUEUE", "|13900000010|2"),
    (213, "c-j", "every", "NONE", "ABANDON", "2|2|3"),
    # K: timed out after 60 s
    (220, "c-k", "every", "NONE", "ENTERQUEUE", "|13900000011|2"),
    (280, "c-k", "every", "NONE", "EXITWITHTIMEOUT", "1|2|60"),
    # L: EXITEMPTY after 12 s, Wazo's LEAVEEMPTY 17 ms later (skipped)
    (230, "c-l", "every", "NONE", "ENTERQUEUE", "|13900000012|3"),
    (242, "c-l", "every", "NONE", "EXITEMPTY", "1|3|12"),
    (242.017, "c-l", "every", "NONE", "LEAVEEMPTY", ""),
    # M: LEAVEUNAVAIL with no data, 30 s after it entered
    (240, "c-m", "every", "NONE", "ENTERQUEUE", "|13900000013|3"),
    (270, "c-m", "every", "NONE", "LEAVEUNAVAIL", ""),
    # N: pressed 5 after 8 s; O: withdrawn for a callback after 40 s
    (250, "c-n", "every", "NONE", "ENTERQUEUE", "|13900000014|4"),
    (258, "c-n", "every", "NONE", "EXITWITHKEY", "5|1|4|8"),
    (260, "c-o", "every", "NONE", "ENTERQUEUE", "|13900000015|5"),
    (300, "c-o", "every", "NONE", "WITHDRAW", "1|5|40|cb-7"),
    # refused at the door (Wazo's QueueLog()): never queued
    (310, "c-p", "every", "NONE", "CLOSED", ""),
    (311, "c-q", "every", "NONE", "FULL", ""),
    (312, "c-r", "every", "NONE", "DIVERT_CA_RATIO", ""),
    (313, "c-s", "every", "NONE", "DIVERT_HOLDTIME", ""),
    (314, "c-t", "every", "NONE", "JOINEMPTY", ""),
    (315, "c-u", "every", "NONE", "JOINUNAVAIL", ""),
    (320, "c-x", "every", "PJSIP/2001", "AGENTDUMP", ""),
    (321, "c-x", "every", "PJSIP/2001", "SYSCOMPAT", ""),
    # pauses, then every agent leaves; an UNPAUSEALL after a logoff is skipped
    (400, "NONE", "every", "PJSIP/2002", "PAUSE", "lunch"),
    (460, "NONE", "every", "PJSIP/2002", "UNPAUSE", ""),
    (400, "NONE", "NONE", "Agent/2003", "PAUSEALL", "break"),
    (430, "NONE", "NONE", "Agent/2003", "UNPAUSEALL", ""),
    (500, "NONE", "every", "PJSIP/2001", "REMOVEMEMBER", ""),
    (500, "NONE", "NONE", "Agent/2002", "AGENTLOGOFF", "PJSIP/2002|500"),
    (500, "NONE", "NONE", "Agent/2003", "AGENTCALLBACKLOGOFF", "2003@agents|500"),
    (501, "NONE", "NONE", "Agent/2003", "UNPAUSEALL", ""),
]


@pytest.fixture(scope="module")
def imported(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = (datetime.now(UTC) - timedelta(days=2)).replace(second=0, microsecond=0)
    epoch = base.timestamp()
    path: Path = tmp_path_factory.mktemp("every") / "queue_log"
    # in time order, as Asterisk writes it (LINES is grouped by call to be read)
    ordered = sorted(LINES, key=lambda line: line[0])
    path.write_text(
        "".join(f"{epoch + t:.3f}|{c}|{q}|{a}|{v}|{d}\n" for t, c, q, a, v, d in ordered)
    )
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "asterisk", "import", str(path), "--url", stack.url],
        cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    span = {"from": base.isoformat(), "to": (base + timedelta(minutes=15)).isoformat()}

    def every() -> dict[str, Any] | None:
        r = stack.get("/v1/kpis/queue/every", **span)
        f: dict[str, Any] = r.json()
        return f if r.status_code == 200 and (f["offered"], f["handled"]) == (21, 8) else None

    queue = wait_until(every, timeout=30)
    assert queue, stack.get("/v1/kpis/queue/every", **span).text
    return {"out": done.stdout, "queue": queue, "span": span}


def test_every_line_is_read_and_none_is_malformed(imported: dict[str, Any]) -> None:
    out = imported["out"]
    assert f"lines read       {len(LINES)}" in out
    assert "malformed lines  0" in out
    for skipped in ("QUEUESTART", "CONFIGRELOAD", "DID", "INFO", "RINGCANCELED", "AGENTDUMP",
                    "SYSCOMPAT", "LEAVEEMPTY of a call already ended",
                    "UNPAUSEALL of an agent logged off"):  # fmt: skip
        assert f"  {skipped}\n" in out, skipped


def test_every_way_a_call_ends_is_counted_where_it_belongs(imported: dict[str, Any]) -> None:
    q = imported["queue"]
    # A–H answered; I, J abandoned (J short); K timed out; L, M blocked in the
    # queue; N left by key; O withdrawn for a callback; six refused at the door
    assert (q["offered"], q["answered"], q["abandoned"], q["short_abandoned"]) == (21, 8, 2, 1)
    assert (q["timed_out"], q["blocked_in_queue"], q["exited_by_key"]) == (1, 2, 1)
    assert (q["callbacks_accepted"], q["closed"], q["queue_full"], q["diverted"]) == (1, 1, 1, 2)
    assert (q["blocked_at_entry"], q["saturated"], q["blocked"], q["in_queue"]) == (2, 3, 4, 0)
    # misses by default: (2 − 1) + 1 + 1 + 2 + 2 + 2 + 1 = 10; closed and the
    # callback are not
    assert q["answer_rate"] == 8 / 18 and q["service_level"] == 8 / 18
    assert q["service_level_offered"] == 8 / 21
    # waits of the answered: 8, 5, 6, 4, 3, 5, 4, 6
    assert q["asa_seconds"] == 41 / 8
    # the 15 calls that queued: the answered (41) + 25 + 3 + 60 + 12 + 30 + 8 + 40
    assert q["awt_seconds"] == 219 / 15
    # talk 100 + 50 + 40 + 30 + 20 + 25 + 35 + 15; wrap-up 10 (B) + 8 (F)
    assert q["avg_talk_seconds"] == 315 / 8 and q["avg_acw_seconds"] == 18 / 8
    assert q["aht_seconds"] == 333 / 8 and q["transfers"] == 5


def figures(stack: Stack, imported: dict[str, Any], kind: str, ident: str) -> dict[str, Any]:
    r = stack.get(f"/v1/kpis/{kind}/{ident}", **imported["span"])
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_each_agent_gets_its_own_legs_and_states(stack: Stack, imported: dict[str, Any]) -> None:
    a1, a2, a3 = (figures(stack, imported, "agent", a) for a in ("2001", "2002", "2003"))
    # 2001: rang on A without answering, answered D and F (ring 1 s each)
    assert (a1["presented"], a1["answered"], a1["rona"], a1["avg_ring_seconds"]) == (3, 2, 1, 1.0)
    assert a1["avg_acw_seconds"] == 8 / 2  # F's wrap-up, logged without a call id
    assert (a2["presented"], a2["answered"], a2["avg_talk_seconds"]) == (2, 2, (100 + 35) / 2)
    # 2003: B, E, H; logged in 0–500 s: on calls 50 + 20 + 15, wrap-up 10 (B),
    # on a break 30, the rest available; the UNPAUSEALL after its logoff is not time
    assert (a3["answered"], a3["transfers"]) == (3, 2)
    assert (a3["logged_in_seconds"], a3["on_call_seconds"], a3["wrap_up_seconds"]) == (500, 85, 10)
    assert a3["not_ready_by_reason"] == {"break": 30.0} and a3["available_seconds"] == 375
    assert a2["not_ready_by_reason"] == {"lunch": 60.0}
    unknown = figures(stack, imported, "agent", "unknown")
    assert (unknown["answered"], unknown["logged_in_seconds"]) == (1, 0)
