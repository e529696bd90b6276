"""`GET /v1/stream`: the wallboard's push feed (Server-Sent Events).

One `Hub` per API process reads the figures of every entity some client
watches, once a tick, whatever the number of clients: 500 wallboards cost the
database what one costs. An entity's update is its whole tile (not a delta), so

* coalescing is free: a client that has not taken an update yet gets the newer
  one in its place, and its buffer never holds more than one update per entity
  it watches (a slow client costs memory bounded by its selection, and never
  holds up the others: the hub hands updates over without waiting);
* resuming is exact: each update carries `id: <epoch>-<seq>`; a client that
  comes back with `Last-Event-ID` gets, per entity, the latest update if it is
  newer than that id. Ids from another process (a restart, another replica)
  get a fresh snapshot instead.

Frames: `snapshot` (every watched tile and the firing alerts, first),
`update` (one tile), `alerts` (the firing alerts, when they change), `pipeline`
(how far the figures are behind what was ingested, when that changes) and
`heartbeat` (every few seconds, with the time of the last good read, so a page
can tell a quiet floor from a stalled feed, and `pipeline`: how far the workers
are behind what was ingested, so it can tell figures that are late).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api.deps import EngineDep, SettingsDep
from services.api.kpis import Kind, require_entity
from services.api.pipeline import PipelineStatus
from services.api.tiles import ALERTS_KEY, Key, read_tiles
from services.core.settings import Settings
from services.core.timewin import iso
from services.readmodel.figures import Figures
from services.readmodel.notifications import FiguresListener

log = logging.getLogger("callkpi.stream")

# Figures are read as soon as a worker commits (its NOTIFY), so a page sees a
# call within the commit and one read; and at least once a second for what the
# clock moves (waits, time in state, the trailing windows' edges). Reads start
# at least MIN_GAP_S apart: a busy worker commits several batches a second and
# each read serves every client, so four a second keep the feed within a
# quarter second of the worker without re-reading the same buckets for nothing.
TICK_S = 1.0
MIN_GAP_S = 0.25
# Often enough that a page notices a dead feed within two missed beats (10 s),
# rare enough to be noise next to the updates.
HEARTBEAT_S = 5.0
# One stream watches at most this many entities (a 500-agent leaderboard); the
# per-client buffer is bounded by it.
MAX_ENTITIES = 500
RECONNECT_MS = 2000
# An entity nobody watches is still read this long, so a page that reconnects
# (a network blip, a reload) resumes exactly instead of being sent everything.
IDLE_GRACE_S = 60.0

# How far behind the figures are (services/api/pipeline.py): a key every client
# watches, published each tick when it changes, whether or not Postgres answers.
PIPELINE_KEY = ("pipeline", "status")

CLIENTS = Gauge("callkpi_stream_clients", "Clients connected to /v1/stream")
UPDATES = Counter("callkpi_stream_updates", "Entity updates the stream hub produced")
REFRESH_ERRORS = Counter("callkpi_stream_refresh_errors", "Failed reads of the stream hub")


def _frame(event: str, data: bytes, ident: str | None = None) -> bytes:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + data + b"\n\n"


@dataclass(slots=True)
class Update:
    seq: int
    key: Key
    payload: dict[str, Any]
    frame: bytes


@dataclass(eq=False)
class Client:
    keys: frozenset[Key]
    pending: dict[Key, Update] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, update: Update) -> None:
        # replaces an update not taken yet: the newer tile says all the older did
        self.pending[update.key] = update
        self.wake.set()

    def take(self) -> bytes:
        self.wake.clear()
        ready, self.pending = self.pending, {}
        return b"".join(u.frame for u in sorted(ready.values(), key=lambda u: u.seq))


class HubFull(Exception):
    pass


class Hub:
    def __init__(self, settings: Settings, engine: AsyncEngine,
                 pipeline: PipelineStatus | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.engine = engine
        self.pipeline = pipeline  # how far behind the figures are (snapshot, heartbeat)
        # a new epoch per process: ids from a previous one are not comparable
        self.epoch = secrets.token_hex(4)
        self.seq = 0
        self.latest: dict[Key, Update] = {}
        self._digest: dict[Key, bytes] = {}
        self.clients: set[Client] = set()
        self._watchers: dict[Key, int] = {}  # 0: in its grace period
        self._idle_since: dict[Key, float] = {}
        self._lock = asyncio.Lock()
        self.figures_at: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self._figures = FiguresListener(settings, "wallboard feed")

    # --- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stream-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._figures.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            # cleared before reading: a commit during the read wakes the next one
            self._figures.changed.clear()
            await self._figures.listen()
            self._expire(started)
            self._publish_pipeline()
            watched = [k for k in self._watchers if k != PIPELINE_KEY]
            if watched:
                try:
                    async with self._lock:
                        await self._refresh(watched)
                except Exception as exc:  # the feed goes on; pages see figures_at age
                    REFRESH_ERRORS.inc()
                    log.warning("stream: reading figures failed: %s", exc)
            # the next read: on the next commit, or a tick after this one
            await self._figures.wait(TICK_S - (loop.time() - started))
            await asyncio.sleep(max(0.0, MIN_GAP_S - (loop.time() - started)))

    # --- clients -------------------------------------------------------------
    async def subscribe(self, keys: list[Key], last_event_id: str | None) -> tuple[Client, bytes]:
        """Register a client; returns it and its first frames (a snapshot, or
        on a resume the updates it missed)."""
        if len(self.clients) >= self.settings.stream_max_clients:
            raise HubFull
        wanted = [*keys, ALERTS_KEY, *([PIPELINE_KEY] if self.pipeline is not None else [])]
        async with self._lock:
            self._publish_pipeline()
            missing = [k for k in wanted if k not in self.latest]
            if missing:
                await self._refresh(missing, keep=set(missing))
            # nothing awaits from here on: no update can slip between the
            # first frames and the registration
            client = Client(frozenset(wanted))
            self.clients.add(client)
            for k in wanted:
                self._watchers[k] = self._watchers.get(k, 0) + 1
                self._idle_since.pop(k, None)
            CLIENTS.set(len(self.clients))
            since = self._resume_point(last_event_id)
            if since is not None:
                missed = sorted(
                    (self.latest[k] for k in wanted if self.latest[k].seq > since),
                    key=lambda u: u.seq,
                )
                return client, b"".join(u.frame for u in missed)
            return client, self._snapshot(keys)

    def unsubscribe(self, client: Client) -> None:
        if client not in self.clients:
            return
        self.clients.discard(client)
        CLIENTS.set(len(self.clients))
        now = asyncio.get_running_loop().time()
        for k in client.keys:
            self._watchers[k] -= 1
            if self._watchers[k] <= 0:
                self._idle_since[k] = now

    def _expire(self, now: float) -> None:
        """Forget entities idle past the grace period: their stored tile would go
        out of date, and a later resume must not trust it."""
        for k, since in list(self._idle_since.items()):
            if now - since >= IDLE_GRACE_S:
                del self._idle_since[k], self._watchers[k]
                self.latest.pop(k, None)
                self._digest.pop(k, None)

    def _resume_point(self, last_event_id: str | None) -> int | None:
        if not last_event_id:
            return None
        epoch, _, seq = last_event_id.strip().partition("-")
        if epoch != self.epoch or not seq.isdigit() or int(seq) > self.seq:
            return None
        return int(seq)

    def _snapshot(self, keys: list[Key]) -> bytes:
        body = {
            "entities": [self.latest[k].payload for k in keys],
            "alerts": self.latest[ALERTS_KEY].payload["items"],
            "figures_at": self._figures_at(),
            "pipeline": self._pipeline(),
            "tick_seconds": TICK_S,
            "heartbeat_seconds": HEARTBEAT_S,
            # what the page colours agents by, and links service level's misses with
            "limits": self.settings.wallboard.seconds(),
            "sl_seconds": self.settings.kpi.service_level_seconds,
        }
        return f"retry: {RECONNECT_MS}\n".encode() + _frame(
            "snapshot", orjson.dumps(body), f"{self.epoch}-{self.seq}"
        )

    def heartbeat(self) -> bytes:
        now = iso(datetime.now(UTC), self.settings.tz)
        body = {"at": now, "figures_at": self._figures_at(), "pipeline": self._pipeline()}
        return _frame("heartbeat", orjson.dumps(body))

    def _pipeline(self) -> dict[str, Any] | None:
        return self.pipeline.summary() if self.pipeline is not None else None

    def _publish_pipeline(self) -> None:
        """A `pipeline` frame to every client when what a page shows changes: while
        the figures are behind, the summary in whole seconds (at most a frame a
        second); otherwise just that they are not (no frames as backlogs of a
        healthy pipeline come and go)."""
        summary = self._pipeline()
        if summary is not None:
            summary["behind_seconds"] = round(summary["behind_seconds"])
            self._publish(PIPELINE_KEY, summary if summary["behind"] else {"behind": False})

    def _figures_at(self) -> str | None:
        return None if self.figures_at is None else iso(self.figures_at, self.settings.tz)

    # --- figures -------------------------------------------------------------
    async def _refresh(self, keys: list[Key], keep: set[Key] | None = None) -> None:
        """Read the tiles of `keys` and hand the changed ones to their watchers.
        `keep`: keys to store although nobody watches them yet (a subscribe)."""
        now = datetime.now(UTC)
        async with self.engine.connect() as conn:
            tiles = await read_tiles(conn, self.settings, now, keys)
        self.figures_at = now
        for key, payload in tiles:
            if key not in self._watchers and not (keep and key in keep):
                continue  # the last watcher left while we were reading
            self._publish(key, payload)

    def _publish(self, key: Key, payload: dict[str, Any]) -> None:
        data = orjson.dumps(payload)
        if self._digest.get(key) == data:
            return
        self.seq += 1
        UPDATES.inc()
        event = {ALERTS_KEY: "alerts", PIPELINE_KEY: "pipeline"}.get(key, "update")
        update = Update(self.seq, key, payload, _frame(event, data, f"{self.epoch}-{self.seq}"))
        self._digest[key] = data
        self.latest[key] = update
        for client in self.clients:
            if key in client.keys:
                client.offer(update)


# --- the endpoint --------------------------------------------------------------
router = APIRouter(tags=["wallboard"])


async def _selection(
    engine: AsyncEngine,
    settings: Settings,
    kind: Kind | None,
    ids: list[str],
    entities: list[str],
    team: str | None,
) -> list[Key]:
    keys: list[Key] = []
    for i, text in enumerate(entities):
        k, sep, ident = text.partition(":")
        if not sep or k not in Kind.__members__.values() or not ident:
            raise HTTPException(
                422, f"entity[{i}]: {text!r} is not kind:id (kind: center, team, queue or agent)"
            )
        keys.append((k, ident))
    if kind is not None:
        if ids:
            keys.extend((kind.value, i) for i in ids)
        else:
            roster = settings.roster(kind.value)
            if team is not None:
                if kind is Kind.QUEUE:
                    roster = [q for q in roster if settings.queue_team(q) == team]
                elif kind is Kind.AGENT:
                    roster = [a for a in roster if settings.agent_team(a) == team]
                elif kind is Kind.TEAM:
                    roster = [t for t in roster if t == team]
            keys.extend((kind.value, i) for i in roster)
    elif ids:
        raise HTTPException(422, "id: give kind with id (or use entity=kind:id)")
    keys = list(dict.fromkeys(keys))
    if not keys:
        raise HTTPException(422, "nothing to watch: give kind (and id) or entity=kind:id")
    if len(keys) > MAX_ENTITIES:
        raise HTTPException(422, f"{len(keys)} entities: at most {MAX_ENTITIES} per stream")
    rosters = {k: set(settings.roster(k)) for k in {k for k, _ in keys}}
    unknown = [(k, ident) for k, ident in keys if ident not in rosters[k]]
    if unknown:
        async with engine.connect() as conn:
            figures = Figures(conn, settings, datetime.now(UTC), grouped=False)
            for k, ident in unknown:
                await require_entity(figures, Kind(k), ident)
    return keys


@router.get(
    "/v1/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    settings: SettingsDep,
    engine: EngineDep,
    kind: Annotated[Kind | None, Query(description="watch entities of this kind")] = None,
    id: Annotated[list[str], Query(description="ids of `kind` (repeat; none: the roster's)")] = [],  # noqa: B006 - FastAPI copies query defaults
    entity: Annotated[list[str], Query(description="kind:id, repeatable, to mix kinds")] = [],  # noqa: B006
    team: Annotated[str | None, Query(description="with kind and no id: only this team's")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-Sent Events: a `snapshot`, then an `update` per entity whose tile
    changed (at most one a second), `alerts` when the firing alerts change, and a
    `heartbeat` every few seconds. Resumable with `Last-Event-ID`."""
    hub: Hub = request.app.state.hub
    keys = await _selection(engine, settings, kind, id, entity, team)
    try:
        client, first = await hub.subscribe(keys, last_event_id)
    except HubFull:
        raise HTTPException(
            503, f"{settings.stream_max_clients} stream clients already connected",
            headers={"Retry-After": "10"},
        ) from None  # fmt: skip
    except Exception as exc:
        log.warning("stream: cannot read the first figures: %s", exc)
        raise HTTPException(503, "figures unavailable; try again", {"Retry-After": "5"}) from None

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield first
            while True:
                try:
                    async with asyncio.timeout(HEARTBEAT_S):
                        await client.wake.wait()
                except TimeoutError:
                    yield hub.heartbeat()
                    continue
                yield client.take()
        finally:
            hub.unsubscribe(client)

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        # no-transform and X-Accel-Buffering: proxies must pass frames on at once
        headers={"Cache-Control": "no-store, no-transform", "X-Accel-Buffering": "no"},
    )
