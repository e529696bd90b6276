"""The worker's store: the SQL it writes and reads with, and the rows it sends.

Every batch writes through a handful of set-based statements, each fed one JSON
array of rows (json_to_recordset): orjson and Postgres' JSON parser are both C,
where asyncpg would encode arrays element by element. The rows use short keys to
keep those documents small (a backlog batch holds ~12k delta rows); each
statement's `AS x(...)` column list is the schema of its rows:

| rows of         | keys                                                              |
|-----------------|-------------------------------------------------------------------|
| bucket deltas   | k kind, i entity id, b bucket (s since the epoch), then counters  |
| agent segments  | i agent, t its team, s start µs, e end µs, st state, r reason,    |
|                 | n sign (+1 a segment added, -1 one withdrawn)                     |
| calls           | c call id, p partition, o offered µs, e events, r contribution,  |
|                 | f FCR fact, q queue, w waiting now                                |
| agent timelines | a agent, p partition, e events, s state, r reason, t since µs     |
| state events    | a agent, i event id, t time µs, s state, r reason                 |
| FCR calls       | c call id, u customer, p partition, t offered µs, n pending,      |
|                 | f fact, r contribution                                            |

Nothing here decides what to count: that is services/kpi_stream/core.py (pure),
and the protocol that makes a batch's writes exactly-once is processor.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import asyncpg
import orjson

from services.core.agents import SEGMENT_PIECE_US, SegmentRow, StateEvent
from services.core.calls import MINUTE_US, Contribution, Counters, DeltaKey
from services.core.db import FIGURES_CHANNEL
from services.core.envelope import Envelope
from services.core.kpi import AGENT_STATES, AGENT_TIME_COUNTERS, CALL_COUNTERS, FCR_COUNTERS
from services.kpi_stream.core import CallState, FcrRow


# The deltas travel as one JSON array of rows expanded by json_to_recordset: orjson
# and Postgres' JSON parser are both C, whereas asyncpg encodes 21 bigint[] arrays
# element by element (measured: ~40% of the worker's Python time at 12k rows/batch).
def _additions(table: str, columns: tuple[str, ...]) -> str:
    """The SET list of an upsert that adds counters to a row's."""
    return ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in columns)


def _additive_upsert(table: str, columns: tuple[str, ...]) -> str:
    """One set-based upsert adding counters to minute-bucket rows. The ORDER BY
    makes concurrent transactions lock rows in the same order: no deadlocks."""
    cols = ", ".join(columns)
    coalesced = ", ".join(f"coalesce({c}, 0) AS {c}" for c in columns)
    typed = ", ".join(f"{c} bigint" for c in columns)
    return f"""
INSERT INTO {table} (kind, entity_id, bucket, {cols})
SELECT k, i, to_timestamp(b), {coalesced}
FROM json_to_recordset($1::json) AS x(k text, i text, b bigint, {typed})
ORDER BY k, i, b
ON CONFLICT (kind, entity_id, bucket) DO UPDATE SET {_additions(table, columns)}
"""


BUCKET_UPSERT = _additive_upsert("kpi_buckets", CALL_COUNTERS)

# Agent time arrives as the agents' changed segments, signed, each with the agent's
# team ("t"). One statement appends them to agent_segments, cut at whole hours
# (migration 0010 says why), and adds their time, split into minutes, to the team
# and center rows of kpi_time_buckets and kpi_reason_buckets: Postgres splits and
# sums in C what cost the worker a tenth of its Python time, and writes one row per
# segment instead of one per agent-minute.
_ROLLUPS = "(VALUES ('team', m.t), ('center', 'all')) AS g(kind, id)"  # "all": the center
SEGMENTS_WRITE = """
WITH x AS MATERIALIZED (
  SELECT * FROM json_to_recordset($1::json)
    AS x(i text, t text, s bigint, e bigint, st text, r text, n int)
), own AS (
  INSERT INTO agent_segments (agent_id, start_us, end_us, state, reason, sign)
  SELECT x.i, greatest(x.s, h), least(x.e, h + {hour}), x.st, x.r, x.n
  FROM x CROSS JOIN LATERAL generate_series(x.s - x.s % {hour}, x.e - 1, {hour}) AS h
), m AS MATERIALIZED (
  -- each team's minutes summed first: the rollups then read those, not every agent-minute
  SELECT x.t, x.st, x.r, b, sum(x.n * (least(x.e, b + {minute}) - greatest(x.s, b))) AS us
  FROM x CROSS JOIN LATERAL generate_series(x.s - x.s % {minute}, x.e - 1, {minute}) AS b
  GROUP BY x.t, x.st, x.r, b
), reasons AS (
  INSERT INTO kpi_reason_buckets AS kr (kind, entity_id, bucket, reason, not_ready_us)
  SELECT g.kind, g.id, to_timestamp(m.b / 1000000), m.r, sum(m.us)::bigint
  FROM m CROSS JOIN LATERAL {rollups}
  WHERE m.st = 'not_ready'
  GROUP BY g.kind, g.id, m.b, m.r
  ORDER BY g.kind, g.id, m.b, m.r
  ON CONFLICT (kind, entity_id, bucket, reason) DO UPDATE SET
    not_ready_us = kr.not_ready_us + EXCLUDED.not_ready_us
)
INSERT INTO kpi_time_buckets (kind, entity_id, bucket, logged_in_us, {states})
SELECT g.kind, g.id, to_timestamp(m.b / 1000000), sum(m.us)::bigint, {by_state}
FROM m CROSS JOIN LATERAL {rollups}
GROUP BY g.kind, g.id, m.b
ORDER BY g.kind, g.id, m.b
ON CONFLICT (kind, entity_id, bucket) WHERE kind <> 'agent' DO UPDATE SET {updates}
""".format(
    hour=SEGMENT_PIECE_US,
    minute=MINUTE_US,
    rollups=_ROLLUPS,
    states=", ".join(f"{s}_us" for s in AGENT_STATES),
    by_state=", ".join(
        f"coalesce(sum(m.us) FILTER (WHERE m.st = '{s}'), 0)::bigint" for s in AGENT_STATES
    ),
    updates=_additions("kpi_time_buckets", AGENT_TIME_COUNTERS),
)
FCR_BUCKET_UPSERT = _additive_upsert("kpi_fcr_buckets", FCR_COUNTERS)

# Call states and FCR rows travel the same way as bucket deltas: one JSON document,
# `json` columns (stored as text, no jsonb conversion), no per-element encoding.
CALLS_UPSERT = """
INSERT INTO calls (call_id, part, offered_at, updated_at, events, contrib, fact, queue_id, waiting)
SELECT c, p, timestamptz 'epoch' + o * interval '1 microsecond', now(), e, r, f, q, w
FROM json_to_recordset($1::json)
  AS x(c text, p int, o bigint, e json, r json, f json, q text, w bool)
ON CONFLICT (call_id) DO UPDATE SET
  part = EXCLUDED.part, offered_at = EXCLUDED.offered_at, updated_at = EXCLUDED.updated_at,
  events = EXCLUDED.events, contrib = EXCLUDED.contrib, fact = EXCLUDED.fact,
  queue_id = EXCLUDED.queue_id, waiting = EXCLUDED.waiting
"""

# Every state event once, by (agent, id): a copy that replaces a conflicting one of
# the same id overwrites it. The timelines above hold only each agent's tail; this
# is where an event before the tail is placed from (fetch_state_copies/history).
STATE_EVENTS_WRITE = """
INSERT INTO agent_state_events (agent_id, event_id, ts_us, state, reason)
SELECT a, i, t, s, r FROM json_to_recordset($1::json) AS x(a text, i text, t bigint, s text, r text)
ON CONFLICT (agent_id, event_id) DO UPDATE SET
  ts_us = EXCLUDED.ts_us, state = EXCLUDED.state, reason = EXCLUDED.reason
"""

# The stored copies of events whose ids a batch brings and its tails do not hold.
STATE_COPIES_FETCH = """
SELECT e.agent_id, e.event_id, e.ts_us, e.state, e.reason
FROM unnest($1::text[], $2::text[]) AS p(a, i)
JOIN agent_state_events e ON e.agent_id = p.a AND e.event_id = p.i
"""

# Per agent, the stored events from `lo` up to (not including) its tail's first
# event, and the one before `lo`: what a change from `lo` on needs placed before
# the tail. Keys compare as the timeline sorts them: (time, id) by code point.
HISTORY_FETCH = """
SELECT x.a AS agent_id, h.event_id, h.ts_us, h.state, h.reason
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[]) AS x(a, lo, t, i)
CROSS JOIN LATERAL (
  (SELECT e.event_id, e.ts_us, e.state, e.reason FROM agent_state_events e
   WHERE e.agent_id = x.a AND e.ts_us < x.lo
   ORDER BY e.ts_us DESC, e.event_id COLLATE "C" DESC LIMIT 1)
  UNION ALL
  (SELECT e.event_id, e.ts_us, e.state, e.reason FROM agent_state_events e
   WHERE e.agent_id = x.a AND e.ts_us >= x.lo
     AND (e.ts_us, e.event_id COLLATE "C") < (x.t, x.i COLLATE "C"))
) h
"""

TIMELINES_UPSERT = """
INSERT INTO agent_timelines (agent_id, part, events, state, reason, since_us, updated_at)
SELECT a, p, e, s, r, t, now()
FROM json_to_recordset($1::json) AS x(a text, p int, e json, s text, r text, t bigint)
ON CONFLICT (agent_id) DO UPDATE SET
  part = EXCLUDED.part, events = EXCLUDED.events, state = EXCLUDED.state,
  reason = EXCLUDED.reason, since_us = EXCLUDED.since_us, updated_at = EXCLUDED.updated_at
"""

# The calls of each probed customer offered within one window ($4) of the probes'
# times and of where the batch's calls ($3) were stored before (a late event can
# move a call's offered time), with how many calls the customer has in all: a
# customer whose calls were all loaded can be cached whole.
FCR_WINDOW_LOAD = """
WITH probe(u, t) AS (
  SELECT * FROM unnest($1::text[], $2::bigint[])
  UNION ALL
  SELECT customer, offered_us FROM fcr_calls
  WHERE call_id = ANY($3::text[]) AND customer = ANY($1::text[])
), span AS (
  SELECT u, min(t) AS lo, max(t) AS hi,
         (SELECT count(*) FROM fcr_calls c WHERE c.customer = probe.u) AS total
  FROM probe GROUP BY u
)
SELECT s.u AS customer, s.lo, s.hi, s.total, f.call_id, f.fact, f.contrib
FROM span s LEFT JOIN fcr_calls f
  ON f.customer = s.u AND f.offered_us BETWEEN s.lo - $4 AND s.hi + $4
"""

FCR_UPSERT = """
INSERT INTO fcr_calls (call_id, customer, part, offered_us, pending, fact, contrib)
SELECT c, u, p, t, n, f, r
FROM json_to_recordset($1::json) AS x(c text, u text, p int, t bigint, n bool, f json, r json)
ON CONFLICT (call_id) DO UPDATE SET
  customer = EXCLUDED.customer, part = EXCLUDED.part, offered_us = EXCLUDED.offered_us,
  pending = EXCLUDED.pending, fact = EXCLUDED.fact, contrib = EXCLUDED.contrib
"""

# Records us as the last writer of the partitions and counts those we already were
# (every statement of a WITH sees the same snapshot: `prev` is the state before).
# Called under the partitions' advisory locks, so it cannot race with itself.
OWNERS_SWAP = """
WITH prev AS (
  SELECT part, owner FROM stream_owners WHERE part = ANY($1::int[])
), swap AS (
  INSERT INTO stream_owners (part, owner) SELECT unnest($1::int[]), $2
  ON CONFLICT (part) DO UPDATE SET owner = EXCLUDED.owner
)
SELECT count(*) FROM prev WHERE owner = $2
"""

STATS_UPSERT = """
INSERT INTO worker_stats (worker_id, events_processed, batches, last_lag_us, updated_at)
VALUES ($1, $2, 1, $3, now())
ON CONFLICT (worker_id) DO UPDATE SET
  events_processed = worker_stats.events_processed + EXCLUDED.events_processed,
  batches = worker_stats.batches + 1,
  last_lag_us = EXCLUDED.last_lag_us, updated_at = EXCLUDED.updated_at
"""


# Where each partition's processing got to (see stream_offsets in core/db.py):
# the last committed batch's, not the greatest ever, so that after the broker lost
# a topic the new, lower offsets replace the old ones.
OFFSETS_WRITE = """
INSERT INTO stream_offsets (topic, part, next_offset, updated_at)
SELECT $1, p, n, now() FROM unnest($2::int[], $3::bigint[]) AS x(p, n)
ON CONFLICT (topic, part) DO UPDATE SET
  next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at
"""


async def write_offsets(conn: asyncpg.Connection, topic: str,
                        envelopes: Sequence[Envelope]) -> None:  # fmt: skip
    """Record, per partition, the offset after the last record of `envelopes`
    (records of unknown offset, such as quarantine replays, record nothing)."""
    nxt: dict[int, int] = {}
    for env in envelopes:
        if env.offset >= 0:
            nxt[env.partition] = max(nxt.get(env.partition, 0), env.offset + 1)
    if nxt:
        await conn.execute(OFFSETS_WRITE, topic, list(nxt), list(nxt.values()))


NOTIFY_FIGURES = f"SELECT pg_notify('{FIGURES_CHANNEL}', '')"


def _offered_us(state: CallState) -> int | None:
    """When the call arrived (exact: live longest_wait is measured from it); None
    for a call not offered yet and for one that ended in the IVR."""
    c = state.contrib
    if c is None or not c.entities:
        return None
    return min((int(e[2]) for e in state.events.values() if e[1] == "call.offered"), default=None)


def _queue_and_waiting(state: CallState) -> tuple[str | None, bool]:
    """The call's queue, and whether it is waiting there now (for live in_queue)."""
    c = state.contrib
    if c is None:
        return None, False
    queue = next((ident for kind, ident in c.entities if kind == "queue"), None)
    return queue, bool(c.entities.get(("center", "all"), {}).get("in_queue"))


def loads_json(text: str | None) -> Any:
    # a JSON null stored in a json column reads back as the text "null"
    return None if text is None else orjson.loads(text)


def fcr_rows(changed: Mapping[str, FcrRow], part_of: Mapping[str, int]) -> str:
    """Changed FCR rows; `part_of`: each row's customer's partition."""
    rows = [
        {
            "c": cid,
            "u": row.fact["customer"],
            "p": part_of[row.fact["customer"]],
            "t": row.fact["offered_at"],
            "n": row.pending,
            "f": row.fact,
            "r": row.contrib.to_json() if row.contrib is not None else None,
        }
        for cid, row in changed.items()
    ]
    return orjson.dumps(rows).decode()


def partitions_of(envelopes: Sequence[Envelope]) -> dict[str, int]:
    """The partition each call (by call_id) and agent ("agent:" + id) came from."""
    out: dict[str, int] = {}
    for env in envelopes:
        for ev in env.items:
            if ev["type"] == "agent.state":
                out["agent:" + ev["agent_id"]] = env.partition
            elif "call_id" in ev:
                out[ev["call_id"]] = env.partition
    return out


async def lock_partitions(conn: asyncpg.Connection, lock_class: int, parts: list[int]) -> None:
    """Take the transaction-scoped advisory locks of `parts` (sorted: every caller
    takes them in the same order, so two workers cannot deadlock on them), in one
    round trip: unnest yields the array in order, and each row takes its lock."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, p) FROM unnest($2::int[]) AS p", lock_class, parts
    )


async def current_watermark(conn: asyncpg.Connection) -> int:
    value = await conn.fetchval("SELECT max(event_us) FROM stream_watermark")
    return int(value) if value is not None else 0


async def write_fcr_deltas(conn: asyncpg.Connection, deltas: Mapping[DeltaKey, Counters]) -> None:
    """One upsert of FCR counter deltas for a whole batch (stage 2, the sweep)."""
    if deltas:
        await conn.execute(FCR_BUCKET_UPSERT, delta_rows(deltas))


def delta_rows(deltas: Mapping[DeltaKey, Counters]) -> str:
    return orjson.dumps(
        [
            {"k": kind, "i": ident, "b": bucket_us // 1_000_000, **counters}
            for (kind, ident, bucket_us), counters in deltas.items()
        ]
    ).decode()


def segment_rows(segments: Iterable[SegmentRow], team: Callable[[str], str]) -> str:
    """Changed segments, each with its agent's team (see SEGMENTS_WRITE)."""
    rows = [
        {"i": agent, "t": team(agent), "s": start, "e": end, "st": state, "r": reason, "n": sign}
        for agent, start, end, state, reason, sign in segments
    ]
    return orjson.dumps(rows).decode()


def calls_rows(changed: Mapping[str, CallState], part_of: Mapping[str, int]) -> str:
    rows = []
    for cid, st in changed.items():
        queue, waiting = _queue_and_waiting(st)
        rows.append(
            {
                "c": cid,
                "p": part_of[cid],
                "o": _offered_us(st),
                "e": list(st.events.values()),
                "r": st.contrib.to_json() if st.contrib is not None else None,
                "f": st.fact,
                "q": queue,
                "w": waiting,
            }
        )
    return orjson.dumps(rows).decode()


def timeline_rows(changed: Mapping[str, list[StateEvent]], part_of: Mapping[str, int]) -> str:
    rows = []
    for agent, timeline in changed.items():
        _eid, since, state, reason = timeline[-1]
        rows.append(
            {
                "a": agent,
                "p": part_of["agent:" + agent],
                "e": timeline,
                "s": state,
                "r": reason,
                "t": since,
            }
        )
    return orjson.dumps(rows).decode()


async def fetch_calls(conn: asyncpg.Connection, call_ids: list[str]) -> dict[str, CallState]:
    if not call_ids:
        return {}
    rows = await conn.fetch(
        "SELECT call_id, events, contrib, fact FROM calls WHERE call_id = ANY($1::text[])",
        call_ids,
    )
    return {
        r["call_id"]: CallState(
            {e[0]: e for e in orjson.loads(r["events"])},
            Contribution.from_json(loads_json(r["contrib"])),
            loads_json(r["fact"]),
        )
        for r in rows
    }


def state_event_rows(written: Iterable[tuple[str, StateEvent]]) -> str:
    rows = [
        {"a": agent, "i": eid, "t": ts, "s": state, "r": reason}
        for agent, (eid, ts, state, reason) in written
    ]
    return orjson.dumps(rows).decode()


async def fetch_state_copies(
    conn: asyncpg.Connection, probes: Sequence[tuple[str, str]]
) -> dict[str, list[StateEvent]]:
    """The stored copy of each (agent, event id) probed, by agent."""
    out: dict[str, list[StateEvent]] = {}
    if probes:
        rows = await conn.fetch(STATE_COPIES_FETCH, [a for a, _ in probes], [i for _, i in probes])
        for r in rows:
            out.setdefault(r["agent_id"], []).append(
                [r["event_id"], r["ts_us"], r["state"], r["reason"]]
            )
    return out


async def fetch_history(
    conn: asyncpg.Connection, needs: Mapping[str, tuple[int, StateEvent]]
) -> dict[str, list[StateEvent]]:
    """Per agent (lo, first event of its tail): see HISTORY_FETCH. Unsorted."""
    out: dict[str, list[StateEvent]] = {}
    if needs:
        agents = list(needs)
        rows = await conn.fetch(
            HISTORY_FETCH,
            agents,
            [needs[a][0] for a in agents],
            [needs[a][1][1] for a in agents],
            [needs[a][1][0] for a in agents],
        )
        for r in rows:
            out.setdefault(r["agent_id"], []).append(
                [r["event_id"], r["ts_us"], r["state"], r["reason"]]
            )
    return out


async def fetch_timelines(
    conn: asyncpg.Connection, agents: list[str]
) -> dict[str, list[StateEvent]]:
    if not agents:
        return {}
    rows = await conn.fetch(
        "SELECT agent_id, events FROM agent_timelines WHERE agent_id = ANY($1::text[])", agents
    )
    return {r["agent_id"]: orjson.loads(r["events"]) for r in rows}
