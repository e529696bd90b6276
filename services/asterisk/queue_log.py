"""Asterisk's queue_log, read and mapped to callkpi events (docs/asterisk.md).

A line is `epoch|callid|queue|agent|EVENT|data1|…|data5`, as app_queue writes
it. PBX front ends export the same columns from their database (MySQL/CSV) with a
`time` column that is an epoch or a local `YYYY-MM-DD HH:MM:SS[.ffffff]`, and the
data either in `data1`…`data5` or in one `data` column joined with `|` (the
older form, whose parameters may also be comma separated).

Mapping is pure: `Mapper.feed(line)` returns the contract events a line means,
using what earlier lines of the same call said (when it entered the queue, when
it was answered). Where the log states a duration (wait, talk), event times are
derived so that callkpi's figures equal the logged durations, which is what
Asterisk's own statistics report: answered = entered + holdtime, ended =
answered + calltime, abandoned = entered + waittime. A call whose earlier lines
are missing (a file that starts mid-call) gets them derived backwards from the
line at hand.

Event ids are derived from the line's content (a hash of its fields, plus the
event's index within the line), so importing a file twice, importing a rotated
file that `follow` already sent, or a `follow` restarting from its checkpoint
sends ids the pipeline has seen and changes nothing.

One file, over 400 lines, on purpose: the line parser, the verbs' field layouts
and the per-call state the mapper keeps are read together at every line.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from typing import Any
from zoneinfo import ZoneInfo

from services.core.events import CONTROL_CHARACTERS

# Lines that mean "the call left the queue unanswered": who ended it, the index
# of its waittime in data (None: the line has none, the wait runs from the
# ENTERQUEUE), and the call.ended reason. apps/app_queue.c writes ABANDON,
# EXITWITHTIMEOUT and EXITEMPTY as `pos|opos|waittime`, EXITWITHKEY as
# `key|pos|opos|waittime`, WITHDRAW as `pos|opos|waittime|info`; XiVO/Wazo's
# dialplan logs LEAVEEMPTY (right after Asterisk's EXITEMPTY) and LEAVEUNAVAIL
# through QueueLog() with no data.
UNANSWERED_EXITS: dict[str, tuple[str, int | None, str]] = {
    "ABANDON": ("customer", 2, "abandoned"),
    "EXITWITHTIMEOUT": ("system", 2, "timeout"),
    "EXITEMPTY": ("system", 2, "agents_left"),
    "LEAVEEMPTY": ("system", None, "agents_left"),
    "LEAVEUNAVAIL": ("system", None, "agents_left"),
    "EXITWITHKEY": ("customer", 3, "exit_key"),
    "WITHDRAW": ("system", 2, "callback"),  # reason: AsteriskSettings.withdraw_reason
}
# The call never entered the queue: offered and ended by the system at once, with
# its reason. Asterisk sets these as QUEUESTATUS without logging them; XiVO/Wazo
# log them through QueueLog(), DIVERT_* from wazo-agid's check_diversion.
REFUSED: dict[str, str] = {
    "CLOSED": "closed",
    "FULL": "full",
    "DIVERT_CA_RATIO": "diverted",
    "DIVERT_HOLDTIME": "diverted",
    "JOINEMPTY": "no_agents",
    "JOINUNAVAIL": "no_agents",
}
COMPLETES = {"COMPLETECALLER": "customer", "COMPLETEAGENT": "agent"}
TRANSFERS = frozenset({"TRANSFER", "BLINDTRANSFER", "ATTENDEDTRANSFER"})
LOGINS = frozenset({"AGENTLOGIN", "AGENTCALLBACKLOGIN", "ADDMEMBER"})
LOGOFFS = frozenset({"AGENTLOGOFF", "AGENTCALLBACKLOGOFF", "REMOVEMEMBER"})
PAUSES = frozenset({"PAUSE", "PAUSEALL"})
UNPAUSES = frozenset({"UNPAUSE", "UNPAUSEALL"})
AGENT_VERBS = LOGINS | LOGOFFS | PAUSES | UNPAUSES
# known, and deliberately not mapped (counted as skipped)
IGNORED = frozenset(
    {"CONFIGRELOAD", "QUEUESTART", "INFO", "AGENTDUMP", "RINGCANCELED", "SYSCOMPAT", "DID"}
)

NO_CALL = frozenset({"", "NONE", "REALTIME"})
# The agent id of an answer whose line names no agent (XiVO/Wazo write NONE in
# CONNECT and COMPLETEAGENT): still answered, for the queue, its team and the
# center; shown under this id, with no agent state (nobody's time to count).
UNKNOWN_AGENT = "unknown"
ANSWERING = frozenset({"CONNECT", *COMPLETES, *TRANSFERS})
_TECH = re.compile(r"^(?:SIP|PJSIP|IAX2|Agent|Local|DAHDI|Zap|SCCP|H323|Skype)/", re.I)
_EPOCH = re.compile(r"^\d{9,11}(?:\.\d+)?$")
_EVENT_NAME = re.compile(r"^[A-Z_]+$")


class Malformed(ValueError):
    """A line that is not queue_log: says what is wrong."""


@dataclass(frozen=True, slots=True)
class Line:
    at: float  # epoch seconds, UTC
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...]
    lineno: int

    @property
    def key(self) -> str:
        """What identifies the line whatever its form (a file line, a database
        export with a local time, trailing empty fields or not): the event ids
        hash this, so the same line from two sources counts once."""
        data = list(self.data)
        while data and not data[-1]:
            data.pop()
        return "|".join([repr(self.at), self.callid, self.queue, self.agent, self.event, *data])

    def num(self, i: int) -> float:
        """data[i] as a number of seconds (0 when absent or empty)."""
        if i >= len(self.data) or not self.data[i].strip():
            return 0.0
        try:
            value = float(self.data[i])
        except ValueError:
            raise Malformed(f"{self.event} data{i + 1}: not a number: {self.data[i]!r}") from None
        if value < 0:
            raise Malformed(f"{self.event} data{i + 1}: negative: {self.data[i]!r}")
        return value


def _time(text: str, tz: ZoneInfo) -> float:
    text = text.strip()
    if _EPOCH.match(text):
        return float(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise Malformed(f"time: neither an epoch nor a timestamp: {text[:40]!r}") from None
    if dt.tzinfo is None:  # a database export's local wall time
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


def parse_pipe(text: str, lineno: int, tz: ZoneInfo) -> Line:
    fields = text.rstrip("\r\n").split("|")
    if len(fields) < 5:
        raise Malformed(f"{len(fields)} fields; a queue_log line has at least 5")
    at = _time(fields[0], tz)
    event = fields[4].strip()
    if not event or not _EVENT_NAME.match(event):
        raise Malformed(f"event: {event[:40]!r} is not an event name")
    data = fields[5:]
    if len(data) == 1 and "," in data[0] and event not in ("ENTERQUEUE", "PAUSE", "INFO"):
        data = data[0].split(",")  # the older single-parameter, comma-joined form
    return Line(at, fields[1].strip(), fields[2].strip(), fields[3].strip(), event,
                tuple([d.strip() for d in data]), lineno)  # fmt: skip


def parse_line(text: str, lineno: int, tz: ZoneInfo) -> Line | Malformed:
    """A pipe-form line, or what is wrong with it (numbered), never an exception."""
    try:
        return parse_pipe(text, lineno, tz)
    except Malformed as exc:
        return Malformed(f"line {lineno}: {exc}")


CSV_TIME = ("time", "timestamp", "created", "eventdate")


def csv_lines(rows: Iterable[list[str]], tz: ZoneInfo) -> Iterator[Line | Malformed]:
    """A database export with a header row (`time,callid,queuename,agent,event,
    data1..data5` or `…,event,data`)."""
    it = iter(rows)
    header = [h.strip().lower() for h in next(it, [])]
    col = {h: i for i, h in enumerate(header)}
    t = next((col[h] for h in CSV_TIME if h in col), None)
    needed = {"callid", "queuename", "agent", "event"}
    if t is None or not needed <= col.keys():
        yield Malformed(
            f"CSV header {header[:10]}: needs time, callid, queuename, agent, event and data"
        )
        return
    datacols = [col[f"data{i}"] for i in range(1, 6) if f"data{i}" in col]
    for lineno, row in enumerate(it, start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            if len(row) < len(header):
                raise Malformed(f"{len(row)} columns; the header has {len(header)}")
            if datacols:
                data = [row[i] for i in datacols]
            else:
                raw = row[col["data"]] if "data" in col else ""
                data = raw.split("|") if "|" in raw else raw.split(",") if raw else []
            while data and not data[-1]:
                data.pop()
            text = "|".join([row[t], row[col["callid"]], row[col["queuename"]],
                             row[col["agent"]], row[col["event"]], *data])  # fmt: skip
            yield parse_pipe(text, lineno, tz)
        except Malformed as exc:
            yield Malformed(f"line {lineno}: {exc}")


def read_lines(chunks: Iterable[str], tz: ZoneInfo) -> Iterator[Line | Malformed]:
    """queue_log text lines (pipe form), or a CSV export when the first line is a
    header. Malformed lines come out as `Malformed` in their place, so a caller
    reports them and goes on."""
    it = iter(chunks)
    first = next(it, None)
    if first is None:
        return
    lines = chain([first], it)  # streamed: a year's export is never held whole
    if "|" not in first and "callid" in first.lower():
        yield from csv_lines(csv.reader(lines), tz)
        return
    for lineno, text in enumerate(lines, start=1):
        if text.strip():
            yield parse_line(text, lineno, tz)


def agent_id(raw: str, strip_technology: bool) -> str | None:
    """`SIP/1001`, `PJSIP/1001`, `Agent/1001`, `Local/1001@from-queue/n` → `1001`
    (with `strip_technology`); NONE or empty → None."""
    if raw.upper() in ("", "NONE"):
        return None
    if not strip_technology:
        return raw
    name = _TECH.sub("", raw)
    if raw.lower().startswith("local/"):
        name = name.split("@", 1)[0]
    return name or raw


@lru_cache(maxsize=1024)
def iso(epoch: float) -> str:
    # cached: a line's events share its time, and the next lines' are close by
    # (a fifth of the adapter's time was spent here)
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")


@dataclass
class _Call:
    entered: float | None = None
    answered: float | None = None
    agent: str | None = None
    done: bool = False
    ended: float | None = None  # for a WRAPUPSTART that follows


@dataclass
class Stats:
    lines: int = 0
    events: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    malformed: list[str] = field(default_factory=list)  # "line N: what"
    malformed_count: int = 0

    def bad(self, what: str) -> None:
        self.malformed_count += 1
        if len(self.malformed) < 1000:  # the summary names the first thousand
            self.malformed.append(what)


@dataclass
class Mapper:
    """Lines in, contract events out. `call_per_queue`: one call per queue it
    entered (Asterisk's statistics count this way); otherwise one call per
    callid, attributed to the first queue."""

    call_per_queue: bool = True
    strip_technology: bool = True
    # EXITWITHKEY's key -> the reason it means (voicemail, callback); other keys
    # are exit_key. WITHDRAW's reason (AsteriskSettings says why callback).
    exit_keys: dict[str, str] = field(default_factory=dict)
    withdraw_reason: str = "callback"
    calls: dict[str, _Call] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    newest: float = 0.0  # the newest line time seen (epoch)
    # each agent's last answered call: a WRAPUPSTART logged without a call id
    # (call id and queue NONE) is the after-call work of that call
    last_call: dict[str, str] = field(default_factory=dict)
    # agents whose last login line was a logoff: a PAUSE or UNPAUSE of theirs
    # (Wazo logs UNPAUSEALL right after AGENTCALLBACKLOGOFF) must not log them in
    logged_off: set[str] = field(default_factory=set)
    source: str = ""  # the file being read, named in malformed-line reports

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps: open calls (finished ones are dropped), each
        agent's last answered call and the agents logged off."""
        last = set(self.last_call.values())
        return {
            "v": 2,
            "calls": {
                k: [c.entered, c.answered, c.agent, c.ended] for k, c in self.calls.items()
                if not c.done or k in last
            },
            "last_call": dict(self.last_call),
            "logged_off": sorted(self.logged_off),
        }  # fmt: skip

    def restore(self, state: dict[str, Any]) -> None:
        """From `state()`, or from a checkpoint of earlier versions (open calls only)."""
        if state.get("v") != 2:
            self.calls = {k: _Call(v[0], v[1], v[2]) for k, v in state.items()}
            return
        self.calls = {
            k: _Call(v[0], v[1], v[2], done=v[3] is not None, ended=v[3])
            for k, v in state["calls"].items()
        }
        self.last_call = dict(state["last_call"])
        self.logged_off = set(state["logged_off"])

    def feed(self, item: Line | Malformed) -> list[dict[str, Any]]:
        self.stats.lines += 1
        if isinstance(item, Malformed):
            self.stats.bad(f"{self._where()}{item}")
            return []
        if item.at > self.newest:
            self.newest = item.at
        try:
            events = self._map(item)
        except Malformed as exc:
            self.stats.bad(f"{self._where()}line {item.lineno}: {exc}")
            return []
        digest = hashlib.blake2b(item.key.encode(), digest_size=12).hexdigest()
        # A wrap-up starts at the instant its call ended, where the COMPLETE line
        # set the agent available: states at one instant are ordered by event id,
        # and "aqw-" sorts after every "aq-", so the wrap-up is the state in force.
        prefix = "aqw" if item.event == "WRAPUPSTART" else "aq"
        for i, e in enumerate(events):
            e["event_id"] = f"{prefix}-{digest}-{i}"
        self.stats.events += len(events)
        return events

    def _where(self) -> str:
        return f"{self.source} " if self.source else ""

    def _key(self, line: Line) -> str:
        return f"{line.callid}@{line.queue}" if self.call_per_queue else line.callid

    def _map(self, line: Line) -> list[dict[str, Any]]:
        agent = agent_id(line.agent, self.strip_technology)
        if agent is None and line.event in ANSWERING:
            # answered by an agent the line does not name: no agent state
            events = self._map_line(line, UNKNOWN_AGENT)
            return [e for e in events if e["type"] != "agent.state"]
        return self._map_line(line, agent)

    def _map_line(self, line: Line, agent: str | None) -> list[dict[str, Any]]:
        ev = line.event
        if ev in AGENT_VERBS:
            if agent is None:
                raise Malformed(f"{ev}: no agent")
            if ev in LOGINS:
                self.logged_off.discard(agent)
            elif ev in LOGOFFS:
                self.logged_off.add(agent)
            elif agent in self.logged_off:
                self.stats.skipped[f"{ev} of an agent logged off"] += 1
                return []
            if ev in PAUSES:
                state = {"state": "not_ready"}
                reason = line.data[0] if line.data else ""
                if reason:
                    state["reason"] = _text(reason, 200)
            else:
                state = {"state": "logged_out" if ev in LOGOFFS else "available"}
            return [_agent_event(line.at, agent, state)]
        if ev in IGNORED:
            self.stats.skipped[ev] += 1
            return []
        if ev == "WRAPUPSTART" and (
            line.callid.upper() in NO_CALL or not line.queue or line.queue.upper() == "NONE"
        ):
            if agent is None:
                raise Malformed(f"{ev}: no agent")
            last = self.last_call.get(agent)
            if last is None:
                self.stats.skipped["WRAPUPSTART without a call id, no call of its agent"] += 1
                return []
            return self._wrapup(line, agent, last)
        known = ev in ("ENTERQUEUE", "RINGNOANSWER", "CONNECT", "WRAPUPSTART")
        if not (known or ev in UNANSWERED_EXITS or ev in REFUSED or ev in COMPLETES
                or ev in TRANSFERS):  # fmt: skip
            self.stats.skipped[f"unknown event {ev}"] += 1
            return []
        if line.callid.upper() in NO_CALL:
            raise Malformed(f"{ev}: no call id")
        if not line.queue or line.queue.upper() == "NONE":
            raise Malformed(f"{ev}: no queue")
        key = self._key(line)
        if not self.call_per_queue and key in self.calls and ev == "ENTERQUEUE":
            # a second queue of the same call: attributed to the first
            self.stats.skipped["ENTERQUEUE of a call already queued"] += 1
            return []
        call = self.calls.setdefault(key, _Call())
        base = {"call_id": key}
        out: list[dict[str, Any]] = []

        def offered(at: float) -> None:
            call.entered = at
            out.append({"type": "call.offered", "occurred_at": iso(at), **base,
                        "queue_id": line.queue})  # fmt: skip

        if ev == "ENTERQUEUE":
            offered(line.at)
            if len(line.data) > 1:
                # withheld numbers ("", "0", "anonymous", ...) are recognised at
                # ingest by kpi.withheld_caller_ids, as for every other source
                # as the PBX wrote it, less control characters, which the event
                # contract refuses: one of them would cost the whole call
                out[-1]["customer_id"] = _text(line.data[1], 200)
            return out
        if ev in REFUSED or ev in UNANSWERED_EXITS:
            if call.done:
                # Wazo's LEAVEEMPTY after Asterisk's EXITEMPTY: one call, one end
                self.stats.skipped[f"{ev} of a call already ended"] += 1
                return []
            call.done = True
            if ev in REFUSED:
                offered(line.at)
                out.append({"type": "call.ended", "occurred_at": iso(line.at), **base,
                            "ended_by": "system", "reason": REFUSED[ev],
                            "asterisk_event": ev})  # fmt: skip
                return out
            by, i, reason = UNANSWERED_EXITS[ev]
            # the logged waittime, or None for a line without one (Wazo's)
            logged = line.num(i) if i is not None and i < len(line.data) and line.data[i] else None
            if call.entered is None:
                offered(line.at - (logged or 0.0))
            assert call.entered is not None
            wait = logged if logged is not None else max(0.0, line.at - call.entered)
            ended: dict[str, Any] = {"type": "call.ended", "occurred_at": iso(call.entered + wait),
                                     **base, "ended_by": by, "asterisk_event": ev}  # fmt: skip
            if ev == "EXITWITHKEY":
                key_pressed = _text(line.data[0], 8) if line.data else ""
                reason = self.exit_keys.get(key_pressed, reason)
                if key_pressed:
                    ended["key"] = key_pressed
            elif ev == "WITHDRAW":
                reason = self.withdraw_reason
            ended["reason"] = reason
            out.append(ended)
            return out
        if agent is None:
            self.stats.skipped[f"{ev} without an agent"] += 1
            return []
        if ev == "RINGNOANSWER":
            ring = line.num(0) / 1000  # milliseconds
            out.append({"type": "call.ringing", "occurred_at": iso(line.at - ring), **base,
                        "agent_id": agent})  # fmt: skip
            return out
        if ev == "CONNECT":
            hold, ring = line.num(0), line.num(2)
            if call.entered is None:
                offered(line.at - hold)
            assert call.entered is not None
            at = call.entered + hold
            call.answered, call.agent = at, agent
            self.last_call[agent] = key
            out += [
                {"type": "call.ringing", "occurred_at": iso(at - ring), **base, "agent_id": agent},
                {"type": "call.answered", "occurred_at": iso(at), **base, "agent_id": agent},
                _agent_event(at, agent, {"state": "on_call"}),
            ]
            return out
        if ev == "WRAPUPSTART":
            return self._wrapup(line, agent, key)
        # COMPLETE* and transfers: (hold, talk) at data 0,1 or, for transfers, 2,3
        off = _attended_offset(line) if ev == "ATTENDEDTRANSFER" else 2 if ev in TRANSFERS else 0
        hold, talk = line.num(off), line.num(off + 1)
        if call.answered is None:
            if call.entered is None:
                offered(line.at - talk - hold)
            assert call.entered is not None
            call.answered, call.agent = call.entered + hold, agent
            self.last_call[agent] = key
            out += [
                {"type": "call.answered", "occurred_at": iso(call.answered), **base,
                 "agent_id": agent},
                _agent_event(call.answered, agent, {"state": "on_call"}),
            ]  # fmt: skip
        end = call.answered + talk
        call.done, call.ended = True, end
        if ev in TRANSFERS:
            target = line.data[0] if line.data else ""
            out.append({"type": "call.transferred", "occurred_at": iso(end), **base,
                        "agent_id": agent, "asterisk_event": ev,
                        **({"to": target[:200]} if target else {})})  # fmt: skip
            by = "agent"
        else:
            by = COMPLETES[ev]
        out += [
            {"type": "call.ended", "occurred_at": iso(end), **base, "ended_by": by},
            _agent_event(end, agent, {"state": "available"}),
        ]
        return out

    def _wrapup(self, line: Line, agent: str, key: str) -> list[dict[str, Any]]:
        wrap = line.num(0)
        call = self.calls.get(key)
        # from the call's end, so after-call work equals the logged wrap time
        start = call.ended if call is not None and call.ended is not None else line.at
        base = {"call_id": key}
        return [
            # at the end itself (its event id orders it after the end's
            # "available": Mapper.feed), so the state lasts the logged seconds
            _agent_event(start, agent, {"state": "wrap_up"}),
            {"type": "call.wrapup_ended", "occurred_at": iso(start + wrap), **base,
             "agent_id": agent},
            _agent_event(start + wrap, agent, {"state": "available"}),
        ]  # fmt: skip

    def forget_finished(self, keep_s: float = 3600.0) -> None:
        """Drop calls that ended more than `keep_s` (log time) before the newest
        line: a WRAPUPSTART comes right after its call; memory stays bounded on
        a year's import."""
        horizon = self.newest - keep_s
        self.calls = {
            k: c for k, c in self.calls.items() if not c.done or (c.ended or 0) >= horizon
        }


def _text(value: str, limit: int) -> str:
    """A log field as the contract can carry it: without control characters,
    which it refuses (one would cost the whole event: a pause, a call's end), and
    cut to the field's length."""
    return CONTROL_CHARACTERS.sub("", value)[:limit]


def _attended_offset(line: Line) -> int:
    """Where an ATTENDEDTRANSFER's holdtime is. apps/app_queue.c
    (log_attended_transfer) writes `<method>|holdtime|calltime|origpos`, the
    method with its own fields: `BRIDGE|<bridge>`, `APP|<app>` or
    `LINK|<chan1>|<chan2>`, so the three numbers are the last three fields."""
    n = len(line.data)
    while n and not line.data[n - 1].strip():
        n -= 1
    return max(n - 3, 2)


def _agent_event(at: float, agent: str, fields: dict[str, str]) -> dict[str, Any]:
    return {"type": "agent.state", "occurred_at": iso(at), "agent_id": agent, **fields}
