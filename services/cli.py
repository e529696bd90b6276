"""`callkpi`: one console script for every role.

callkpi dev [--config F] [--port 8000] [--simulate [--understaff 5m+30m]] [--data-dir .callkpi]
callkpi ingest | worker | api     (production roles, one process each)
callkpi migrate
callkpi periods list | close PERIOD [--force] | restate PERIOD --reason R [--by NAME]
callkpi quarantine list | replay (--id N ... | --all)   events the worker set aside
callkpi reconcile [--from T --to T]    re-send FCR facts a broker loss took
callkpi tokens new NAME --scope payroll [--scope …] | hash
callkpi simulate [--url URL | --out FILE] [--seed N] [--speed X] [--understaff 5m+30m] ...
callkpi replay FILE [--url URL]
callkpi asterisk import FILE... | asterisk follow FILE   Asterisk queue_log
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from services.core.auth import SCOPES
from services.core.settings import DEV_HASH_KEY, ConfigError, Settings, load_settings
from services.ingest.client import PATIENCE_S, IngestError, IngestStopped

if TYPE_CHECKING:  # imported where used: each command loads only what it needs
    import httpx
    from fastapi import FastAPI

    from services.simulator import Simulation

log = logging.getLogger("callkpi")


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("aiokafka", "faust", "mode", "kafka", "uvicorn.access", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def _warn_dev_key(settings: Settings) -> None:
    if settings.hash_key.get_secret_value() == DEV_HASH_KEY:
        log.warning(
            "hash_key is the built-in development key: set CALLKPI_HASH_KEY to a secret "
            "before taking real caller ids (they are stored only as keyed hashes)"
        )


def _serve(app: FastAPI, host: str, port: int, settings: Settings) -> None:
    import uvicorn

    from services.api.http_limits import guarded_h11

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                http=guarded_h11(settings.http_head_timeout_seconds))  # fmt: skip


# --- production roles ---------------------------------------------------------
def cmd_migrate(args: argparse.Namespace) -> int:
    from services.core.db import require_database_url
    from services.migrations import upgrade

    settings = _settings(args)
    upgrade(require_database_url(settings))
    log.info("database schema is up to date")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from services.kpi_stream.worker import create_worker_app

    settings = _settings(args)
    log.info("worker health on http://%s:%d/healthz", args.host, args.port)
    _serve(create_worker_app(settings), args.host, args.port, settings)
    return 0


def cmd_api(args: argparse.Namespace, *, read: bool = True, ingest: bool = False) -> int:
    from services.api.app import create_app

    settings = _settings(args)
    if ingest:
        _warn_dev_key(settings)
    _serve(create_app(settings, read=read, ingest=ingest), args.host, args.port, settings)
    return 0


def cmd_periods(args: argparse.Namespace) -> int:
    """`callkpi periods list` / `callkpi periods close PERIOD`: against the database
    directly (the same code as the API's endpoints)."""
    return asyncio.run(_periods(args))


async def _periods(args: argparse.Namespace) -> int:
    import getpass

    from services.core.db import make_engine
    from services.core.timewin import iso
    from services.payroll.close import (
        CloseRefused,
        closable_from,
        close,
        latest_version,
        restate,
    )
    from services.payroll.periods import PeriodError, parse, recent, status

    settings = _settings(args)
    engine = make_engine(settings)
    now = datetime.now(UTC)
    try:
        if args.action == "list":
            async with engine.connect() as conn:
                for p in recent(now, settings.periods, settings.tz):
                    n = await latest_version(conn, p.id)
                    ready = closable_from(settings, p)
                    version = f"v{n}" if n else ""
                    print(f"{p.id:12} {status(p, now, n is not None):8} {version:4} "
                          f"closable from {iso(ready, settings.tz)}")  # fmt: skip
            return 0
        try:
            parse(args.period, settings.periods, settings.tz)
        except PeriodError as exc:
            raise ConfigError(str(exc)) from None
        by = args.by or getpass.getuser()
        try:
            async with engine.begin() as conn:
                # the shell user is who acted: `--by` only names whom for
                actor = f"cli:{getpass.getuser()}"
                if args.action == "restate":
                    v = await restate(conn, settings, args.period, now=now, by=by, actor=actor,
                                      reason=args.reason)  # fmt: skip
                else:
                    v = await close(conn, settings, args.period, now=now, by=by, actor=actor,
                                    force=args.force)  # fmt: skip
        except CloseRefused as exc:
            when = f" (earliest: {iso(exc.earliest, settings.tz)})" if exc.earliest else ""
            print(f"callkpi: not closed: {exc.reason}{when}", file=sys.stderr)
            return 1
        note = " (FCR provisional)" if v.fcr_provisional else ""
        verb = "restated" if args.action == "restate" else "closed"
        print(f"{verb} {v.period} as version {v.version}{note}; checksum {v.checksum}")
        return 0
    finally:
        await engine.dispose()


def cmd_tokens(args: argparse.Namespace) -> int:
    """`callkpi tokens new NAME --scope payroll`: a new random token, printed once,
    with the config entry that holds only its hash."""
    from services.core.auth import new_token, token_hash

    if args.action == "hash":
        token = sys.stdin.readline().strip()
        if not token:
            raise ConfigError("tokens hash: give the token on standard input")
        print(token_hash(token))
        return 0
    token = new_token()
    scopes = ", ".join(dict.fromkeys(args.scope))
    print(
        "token (shown once; give it to the client as 'Authorization: Bearer <token>'):\n"
        f"  {token}\n\nconfig entry (auth.tokens in the YAML file):\n"
        f"  - name: {args.name}\n    sha256: {token_hash(token)}\n    scopes: [{scopes}]"
    )
    return 0


# --- dev: everything on one machine --------------------------------------------
def cmd_dev(args: argparse.Namespace) -> int:
    from services.api.app import create_app
    from services.devstack import EmbeddedBroker, EmbeddedPostgres, free_port
    from services.migrations import upgrade

    if args.config:
        os.environ["CALLKPI_CONFIG"] = str(Path(args.config).resolve())
    settings = load_settings()
    data_dir = Path(args.data_dir or settings.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    broker: EmbeddedBroker | None = None
    pg: EmbeddedPostgres | None = None
    children: list[subprocess.Popen[bytes]] = []
    overrides: dict[str, str] = {}
    try:
        if not settings.kafka_bootstrap:
            broker = EmbeddedBroker(log_path=data_dir / "broker.log")
            overrides["CALLKPI_KAFKA_BOOTSTRAP"] = broker.start()
            log.info("embedded Kafka-protocol broker (Tansu) on %s", broker.bootstrap)
        if not settings.database_url:
            pg = EmbeddedPostgres(data_dir / "postgres")
            overrides["CALLKPI_DATABASE_URL"] = pg.start()
            log.info("embedded PostgreSQL on 127.0.0.1:%d (data in %s)", pg.port, pg.data_dir)
        os.environ.update(overrides)
        settings = load_settings()
        from services.core.db import require_database_url

        upgrade(require_database_url(settings))
        worker_port = free_port()
        worker_log = open(data_dir / "worker.log", "ab")  # noqa: SIM115
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "services.cli", "worker", "--port", str(worker_port)],
                stdout=worker_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        base = f"http://{args.host}:{args.port}"
        now = datetime.now(UTC)
        plan = _payroll_plan(settings, now)
        backfill: int = args.backfill_days
        if backfill is None:
            backfill = (
                0 if plan.closable is None else _days_since(settings, plan.closable.start, now)
            )
        if args.simulate:
            sim_log = open(data_dir / "simulator.log", "ab")  # noqa: SIM115
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "services.cli", "simulate", "--url", base,
                     "--duration", "24h", "--wait-ready", "60",
                     # ~90-97% answered at the peak with the example roster's 32
                     # agents, and 30 calls per 15 minutes center-wide at night
                     # (the daily profile bottoms out at 30%)
                     "--calls-per-hour", "400",
                     "--backfill-days", str(backfill),
                     "--backfill-calls-per-hour", str(_backfill_rate(backfill)),
                     *(["--understaff", args.understaff] if args.understaff else [])],
                    # progress (stdout) on the console, warnings in the log
                    stdout=None,
                    stderr=sim_log,
                    start_new_session=True,
                )
            )  # fmt: skip
        print(
            "\ncallkpi is starting. Logs in " + str(data_dir) + "\n"
            f"  wallboard   {base}/wallboard  (agents: {base}/wallboard/agents)\n"
            f"  figures     {base}/v1/kpis/center/all?window=15m\n"
            f"  teams       {base}/v1/kpis/team?window=15m\n"
            f"  API docs    {base}/docs\n"
            f"  metrics     {base}/metrics\n"
            f"  ingest      POST {base}/v1/events\n"
            + ("  simulator   feeding a simulated center\n" if args.simulate else "")
            + _payroll_banner(base, plan, settings, backfill if args.simulate else 0)
            + "Press Ctrl-C to stop everything.\n",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        _warn_dev_key(settings)
        _serve(create_app(settings, read=True, ingest=True), args.host, args.port, settings)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        if pg is not None:
            pg.stop()
        if broker is not None:
            broker.stop()
        print("callkpi stopped.", flush=True)
    return 0


@dataclass(frozen=True)
class PayrollPlan:
    """Which pay period the demo fills with history and tells the user to close."""

    previous: Any  # the period before the current one (None: explicit calendar, none)
    closable: Any  # the newest one that can be closed now without force, or None
    previous_from: datetime | None  # when `previous` becomes closable


def _payroll_plan(settings: Settings, now: datetime) -> PayrollPlan:
    """On the first days of a month the previous month cannot be closed yet (its
    last calls' FCR windows are open), so the demo's history starts with the newest
    period that can: the close it prints works on any day."""
    from services.payroll.close import closable_from
    from services.payroll.periods import latest_closable, recent

    periods = recent(now, settings.periods, settings.tz, count=2)
    previous = periods[1] if len(periods) > 1 else None
    closable = latest_closable(now, settings.periods, settings.tz,
                               settings.kpi.fcr_window_hours,
                               settings.periods.close_grace_hours)  # fmt: skip
    return PayrollPlan(previous, closable,
                       None if previous is None else closable_from(settings, previous))  # fmt: skip


# History at a quarter of the live rate for a month (~13k events a day, so a
# month's backfill is about a minute, not four); a longer history (the month before
# last, on the first days of a month) at a lower rate, so the demo starts as fast.
BACKFILL_EVENTS_DAYS = 31
BACKFILL_CALLS_PER_HOUR = 100


def _backfill_rate(days: int) -> int:
    if days <= BACKFILL_EVENTS_DAYS:
        return BACKFILL_CALLS_PER_HOUR
    return max(BACKFILL_CALLS_PER_HOUR * BACKFILL_EVENTS_DAYS // days, 20)


def _days_since(settings: Settings, start: datetime, now: datetime) -> int:
    today = now.astimezone(settings.tz).date()
    return max((today - start.astimezone(settings.tz).date()).days, 0)


def _payroll_banner(base: str, plan: PayrollPlan, settings: Settings, backfill: int) -> str:
    out = ""
    prev, ready = plan.previous, plan.closable
    if prev is not None and (ready is None or ready.id != prev.id) and plan.previous_from:
        out += (
            f"  payroll     {prev.id} can be closed from "
            f"{plan.previous_from.astimezone(settings.tz):%Y-%m-%d %H:%M} (its last calls' "
            f"{settings.kpi.fcr_window_hours} h FCR windows and the "
            f"{settings.periods.close_grace_hours} h grace);\n"
            f"              until then ?force=true closes it with provisional FCR figures\n"
        )
    if ready is None:
        return out
    p = ready.id
    wait = " once the backfill is done" if backfill else ""
    return out + (
        f"  payroll     {base}/v1/periods (docs/payroll.md); close {p}{wait}:\n"
        f"              curl -X POST {base}/v1/periods/{p}/close\n"
        f"              curl -o {p}.csv '{base}/v1/periods/{p}/agents?format=csv'\n"
    )


# --- simulator and replay -------------------------------------------------------
def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"duration like 90s, 15m, 2h or 1d: {text!r}") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    from services.simulator import SimConfig, Simulation

    settings = _settings(args)
    start = datetime.fromisoformat(args.start) if args.start else datetime.now(UTC)
    if start.tzinfo is None:
        raise ConfigError("--start: needs a UTC offset")
    cfg = SimConfig(
        seed=args.seed,
        start=start,
        duration=args.duration,
        timezone=settings.timezone,
        calls_per_hour=args.calls_per_hour,
        understaff=args.understaff,
    )
    if args.understaff:
        off, length = args.understaff
        log.info(
            "under-staffing from %s to %s (simulated time): %d%% of the agents the load needs",
            (start + off).isoformat(timespec="seconds"),
            (start + off + length).isoformat(timespec="seconds"),
            round(cfg.understaff_keep * 100),
        )
    history = None
    if args.backfill_days:
        if args.out:
            raise ConfigError("--backfill-days: posts history to ingest; not with --out")
        history = _backfill_sim(settings, args, start)
    sim = Simulation(cfg, list(settings.teams))
    if args.out:
        n = 0
        with open(args.out, "wb") as fh:
            for ev in sim.events():
                fh.write(orjson.dumps(ev) + b"\n")
                n += 1
        print(f"wrote {n} events to {args.out}", file=sys.stderr)
        return 0
    resume = _aware(args.backfill_resume, "--backfill-resume") if args.backfill_resume else None
    try:
        return asyncio.run(_simulate_live(sim, args.url, args.speed, start, args.wait_ready,
                                          _bearer(args), history, resume))  # fmt: skip
    except IngestStopped as stop:
        again = " ".join(a for a in sys.argv if not a.startswith("--backfill-resume")).replace(
            sys.argv[0], "callkpi", 1
        )
        return _stopped(stop, f"from {stop.resume} on (simulated time)",
                        f"{again} --backfill-resume {stop.resume}")  # fmt: skip
    except IngestError as exc:
        print(f"\nstopped: {exc}", file=sys.stderr)
        return 3


def _aware(text: str, flag: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{flag}: not an RFC 3339 time: {text!r}") from None
    if when.tzinfo is None:
        raise ConfigError(f"{flag}: needs a UTC offset: {text!r}")
    return when


def _bearer(args: argparse.Namespace) -> dict[str, str]:
    """The Authorization header of `--token`, for the ingest clients."""
    return {"Authorization": f"Bearer {args.token}"} if args.token else {}


# The history stops this long before the live simulation starts: its last calls
# finish and its agents log out before the live agents log in.
BACKFILL_GAP = timedelta(minutes=30)


def _backfill_sim(settings: Settings, args: argparse.Namespace, live: datetime) -> Simulation:
    """A simulation of the `--backfill-days` days before `live`, from local midnight
    (so a pay period that started then is covered whole)."""
    from services.simulator import SimConfig, Simulation

    first_day = (live.astimezone(settings.tz) - timedelta(days=args.backfill_days)).date()
    begin = datetime.combine(first_day, datetime.min.time(), settings.tz)
    cfg = SimConfig(
        seed=args.seed,
        start=begin,
        duration=live - BACKFILL_GAP - begin,
        timezone=settings.timezone,
        calls_per_hour=args.backfill_calls_per_hour or args.calls_per_hour,
    )
    return Simulation(cfg, list(settings.teams))


async def _simulate_live(
    sim: Simulation,
    url: str,
    speed: float,
    start: datetime,
    wait: float,
    headers: dict[str, str],
    history: Simulation | None = None,
    resume: datetime | None = None,
) -> int:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as client:
        await _wait_ready(client, wait)
        if history is not None:
            await _backfill(client, history, resume)
        t0 = time.monotonic()
        batch: list[dict[str, Any]] = []
        sent = 0
        for ev in sim.events():
            due = (datetime.fromisoformat(ev["occurred_at"]) - start).total_seconds() / speed
            delay = due - (time.monotonic() - t0)
            if delay > 0.2 or len(batch) >= 1000:
                sent += await _post(client, batch)
                batch = []
                if delay > 0:
                    await asyncio.sleep(delay)
            batch.append(ev)
        sent += await _post(client, batch)
        print(f"simulation finished: {sent} events", flush=True)
    return 0


async def _backfill(
    client: httpx.AsyncClient,
    sim: Simulation,
    resume: datetime | None = None,
    patience_s: float = PATIENCE_S,
) -> None:
    """Post the history as fast as ingest takes it, with progress. Skipped when the
    center already has calls on its first day (a re-run over the same database:
    history simulated again with another seed would count twice), unless it resumes
    one that stopped: the same seed gives the same events and ids, and those from
    `resume` on are posted. Each batch's mark is the time of its first event."""
    import httpx

    begin, end = sim.cfg.start, sim.cfg.start + sim.cfg.duration
    first_day = {"from": begin.isoformat(), "to": (begin + timedelta(days=1)).isoformat()}
    try:
        probe = await client.get("/v1/kpis/center/all", params=first_day)
        has_calls = probe.status_code == 200 and bool(probe.json().get("offered"))
    except httpx.HTTPError:
        has_calls = False  # the API is away: posting will wait for it, or say so
    if resume is None and has_calls:
        print(f"backfill: skipped, the center already has calls on {begin.date()}", flush=True)
        return
    print(f"backfill: simulating {begin.date()} to {end.isoformat(timespec='minutes')} "
          f"at {sim.cfg.calls_per_hour:g} calls/h at peak", flush=True)  # fmt: skip
    from services.ingest.client import Sender

    started = last = time.monotonic()
    span = max((end - begin).total_seconds(), 1.0)
    sender = Sender(client, patience_s=patience_s)  # one in flight while the next is made
    batch: list[dict[str, Any]] = []
    for ev in sim.events():
        if resume is not None and datetime.fromisoformat(ev["occurred_at"]) < resume:
            continue
        batch.append(ev)
        if len(batch) < 5000:
            continue
        await sender.send(batch, batch[0]["occurred_at"])
        batch = []
        if time.monotonic() - last >= 5:
            last = time.monotonic()
            done = (datetime.fromisoformat(ev["occurred_at"]) - begin).total_seconds() / span
            print(f"backfill: {ev['occurred_at'][:10]} ({min(done, 1):.0%})  "
                  f"{sender.accepted:,} events  {sender.accepted / (last - started):,.0f}/s",
                  flush=True)  # fmt: skip
    await sender.send(batch, batch[0]["occurred_at"] if batch else None)
    await sender.flush()
    print(f"backfill: done, {sender.accepted:,} events in {time.monotonic() - started:.0f} s; "
          "the worker may take a few seconds more to count them", flush=True)  # fmt: skip


async def _wait_ready(client: httpx.AsyncClient, wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            r = await client.get("/readyz")
            if r.status_code == 200:
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"ingest at {client.base_url} not ready after {wait:.0f}s")
        await asyncio.sleep(0.5)


async def _post(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> int:
    """POST with retries (services/ingest/client.py); logs the first rejections."""
    from services.ingest.client import log_rejections, post_events

    accepted, rejected = await post_events(client, events)
    log_rejections(rejected)
    return accepted


def cmd_asterisk(args: argparse.Namespace) -> int:
    import httpx

    from services.asterisk.feed import Follower, FollowMetrics, import_files, serve_metrics
    from services.asterisk.queue_log import Mapper

    settings = _settings(args)
    cfg = settings.asterisk
    mapper = Mapper(cfg.call_per_queue, cfg.strip_agent_technology)

    async def run_import() -> int:
        paths = [Path(f) for f in args.files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise SystemExit(f"no such file: {', '.join(missing)}")
        async with httpx.AsyncClient(base_url=args.url, timeout=60, headers=_bearer(args)) as c:
            try:
                out = await import_files(paths, c, mapper, settings.tz, cfg.reorder_seconds,
                                         resume=args.resume, patience_s=args.patience)  # fmt: skip
            except IngestStopped as stop:
                again = " ".join(["callkpi asterisk import", *args.files, "--resume",
                                  str(stop.resume)])  # fmt: skip
                return _stopped(stop, f"after line {stop.resume:,} (in reading order)", again)
        print(out.summary())
        return 0 if out.rejected == 0 else 1

    async def run_follow() -> int:
        checkpoint = Path(args.checkpoint or settings.data_dir / "asterisk-follow.json")
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        metrics = FollowMetrics(mapper.stats)
        if args.metrics_port:
            serve_metrics(metrics, args.metrics_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("following %s into %s (checkpoint %s)", args.file, args.url, checkpoint)
        async with httpx.AsyncClient(base_url=args.url, timeout=60, headers=_bearer(args)) as c:
            follower = Follower(Path(args.file), checkpoint, c, mapper, settings.tz,
                                poll_s=args.poll, metrics=metrics)  # fmt: skip
            await follower.run(stop)
        return 0

    return asyncio.run(run_import() if args.action == "import" else run_follow())


def cmd_quarantine(args: argparse.Namespace) -> int:
    """`callkpi quarantine list | replay`: the events the worker set aside, through
    the API's admin endpoints (docs/operations.md#quarantine)."""
    import httpx

    with httpx.Client(base_url=args.url, timeout=120, headers=_bearer(args)) as client:
        if args.action == "list":
            params: dict[str, Any] = {"limit": args.limit, "replayed": args.replayed}
            if args.stage:
                params["stage"] = args.stage
            r = client.get("/v1/admin/quarantine", params=params)
            body = _api_json(r)
            waiting = body["waiting"]
            print(f"waiting: {sum(waiting.values())} "
                  + " ".join(f"({k}: {v})" for k, v in sorted(waiting.items())))  # fmt: skip
            for it in body["items"]:
                where = f"{it['topic']}[{it['partition']}]@{it['offset']}#{it['index']}"
                done = f"  replayed {it['replayed_at']}" if it["replayed_at"] else ""
                print(f"{it['id']:>8}  {it['quarantined_at']}  {it['stage']:6}  {where}  "
                      f"{it['event_id']!r}{done}\n          {it['error']}")  # fmt: skip
            if body["next_after_id"]:
                print(f"(more: the API's ?after_id={body['next_after_id']})")
            return 0
        if not args.ids and not args.all:
            raise ConfigError("quarantine replay: name the items (--id N ...) or --all")
        payload: dict[str, Any] = {"ids": args.ids} if args.ids else {"all": True}
        if args.stage:
            payload["stage"] = args.stage
        replayed = _api_json(client.post("/v1/admin/quarantine/replay", json=payload))["replayed"]
        print(f"replayed {len(replayed)} item(s): {' '.join(map(str, replayed)) or '-'}; the "
              "worker counts them again (what still fails is set aside again)")  # fmt: skip
        return 0


def _api_json(r: httpx.Response) -> Any:
    if r.status_code != 200:
        raise IngestError(f"API answered {r.status_code}: {r.text[:500]}")
    return r.json()


def _stopped(stop: IngestStopped, where: str, again: str) -> int:
    """A feed gave up: say what was confirmed, where it stopped and how to go on."""
    print(
        f"\nstopped: {stop.cause}\n"
        f"confirmed by ingest: {stop.accepted:,} events accepted, {stop.rejected:,} refused; "
        f"nothing {where} is confirmed.\n"
        f"continue with: {again}\n"
        "(re-sending what was already accepted is harmless: event ids make it so)",
        file=sys.stderr,
    )
    return 3


def cmd_reconcile(args: argparse.Namespace) -> int:
    """`callkpi reconcile`: compare what the FCR stage holds with what call assembly
    stored, and send again what is missing or stale (services/kpi_stream/reconcile.py)."""
    settings = _settings(args)
    lo = _aware(args.from_, "--from") if args.from_ else None
    hi = _aware(args.to, "--to") if args.to else None
    return asyncio.run(_reconcile(settings, lo, hi))


async def _reconcile(settings: Settings, lo: datetime | None, hi: datetime | None) -> int:
    import asyncpg
    from aiokafka import AIOKafkaProducer

    from services.core.db import asyncpg_dsn, require_database_url
    from services.kpi_stream.app import fact_records
    from services.kpi_stream.reconcile import reconcile
    from services.kpi_stream.worker import require_bootstrap

    bootstrap = require_bootstrap(settings)
    pool = await asyncpg.create_pool(asyncpg_dsn(require_database_url(settings)), max_size=2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                max_request_size=settings.kafka_max_request_bytes)  # fmt: skip
    await producer.start()

    async def send(by_part: dict[int, list[dict[str, Any]]]) -> None:
        futures = [
            await producer.send(settings.fcr_topic, record, partition=part)
            for part, record in fact_records(by_part, settings.kafka_max_request_bytes)
        ]
        await asyncio.gather(*futures)

    def progress(chunks: int, resent: int) -> None:
        print(f"\r{resent:,} facts sent again", end="", file=sys.stderr, flush=True)

    span = f"calls offered {lo.isoformat() if lo else 'ever'} to {hi.isoformat() if hi else 'now'}"
    try:
        resent = await reconcile(pool, settings, send,
                                 int(lo.timestamp() * 1e6) if lo else None,
                                 int(hi.timestamp() * 1e6) if hi else None, progress)  # fmt: skip
    finally:
        await producer.stop()
        await pool.close()
    agree = "" if resent else " (none: the stages agree)"
    print(f"\nreconciled {span}: {resent:,} FCR fact(s) the FCR stage lacked or held stale "
          f"were sent again{agree}", file=sys.stderr)  # fmt: skip
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"callkpi replay: no such file: {path}")
    try:
        return asyncio.run(_replay(path, path.stat().st_size, args.url, args.batch,
                                   _bearer(args), args.resume, args.patience))  # fmt: skip
    except IngestStopped as stop:
        again = f"callkpi replay {args.file} --resume {stop.resume}"
        return _stopped(stop, f"from line {stop.resume:,} on", again)


async def _replay(
    path: Path,
    total: int,
    url: str,
    batch_size: int,
    headers: dict[str, str],
    resume: int = 1,
    patience_s: float = PATIENCE_S,
) -> int:
    """Post the events of `path` from line `resume` on. Each batch's mark is the
    line of its first event."""
    import httpx

    from services.ingest.client import Sender

    read = malformed = 0
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
        sender = Sender(client, patience_s=patience_s)  # one request in flight while reading
        batch: list[dict[str, Any]] = []
        first = resume  # line of the batch's first event
        done_bytes = 0
        with path.open("rb") as fh:
            for lineno, line in enumerate(fh, start=1):
                done_bytes += len(line)
                if lineno < resume or not line.strip():
                    continue
                if not batch:
                    first = lineno
                try:
                    batch.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    print(f"{path}:{lineno}: malformed JSON, skipped ({exc})", file=sys.stderr)
                    malformed += 1
                    continue
                read += 1
                if len(batch) >= batch_size:
                    await sender.send(batch, first)
                    batch = []
                    rate = read / max(time.monotonic() - started, 1e-6)
                    print(f"\r{done_bytes * 100 // max(total, 1):3d}%  {read} events  "
                          f"{rate:,.0f}/s", end="", file=sys.stderr, flush=True)  # fmt: skip
        await sender.send(batch, first)
        await sender.flush()
    sent = sender.accepted
    print(
        f"\nreplayed {read} events, {sent} accepted, {malformed} malformed lines skipped",
        file=sys.stderr,
    )
    return 0 if sent == read and not malformed else 1


def _understaff(text: str) -> tuple[timedelta, timedelta]:
    start, plus, length = text.partition("+")
    if not plus:
        raise argparse.ArgumentTypeError(f"OFFSET+LENGTH like 5m+30m: {text!r}")
    return _duration(start), _duration(length)


def _understaff_text(text: str) -> str:
    _understaff(text)  # checked here, passed on to the simulator as written
    return text


UNDERSTAFF_HELP = (
    "OFFSET+LENGTH (default 5m+30m): from OFFSET after the start, for LENGTH, each team "
    "keeps on the phones half the agents its load needs, so the answer rate dips below "
    "the alert lines"
)


# --- argument parsing -------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="callkpi", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--config", help="YAML config file (or CALLKPI_CONFIG)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="everything on one machine with embedded broker and Postgres")
    dev.add_argument("--config", default=argparse.SUPPRESS)
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--simulate", action="store_true", help="feed a simulated center")
    dev.add_argument("--data-dir", help="default: the data_dir setting (.callkpi)")
    dev.add_argument(
        "--backfill-days",
        type=int,
        metavar="N",
        help="with --simulate: days of history first (default: since the previous pay "
        "period began, so it can be closed; 0: none)",
    )
    dev.add_argument(
        "--understaff",
        nargs="?",
        const="5m+30m",
        type=_understaff_text,
        metavar="OFFSET+LENGTH",
        help=UNDERSTAFF_HELP,
    )
    dev.set_defaults(func=cmd_dev)

    for name, helptext, port in (
        ("worker", "the Faust stream worker", 8001),
        ("api", "the read API and /metrics", 8000),
        ("ingest", "the ingest endpoint", 8002),
    ):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--config", default=argparse.SUPPRESS)
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--port", type=int, default=port)
    sub.choices["worker"].set_defaults(func=cmd_worker)
    sub.choices["api"].add_argument(
        "--with-ingest", action="store_true", help="also serve POST /v1/events"
    )
    sub.choices["api"].set_defaults(func=lambda a: cmd_api(a, read=True, ingest=a.with_ingest))
    sub.choices["ingest"].set_defaults(func=lambda a: cmd_api(a, read=False, ingest=True))

    per = sub.add_parser("periods", help="pay periods: list, close (docs/payroll.md)")
    per.add_argument("--config", default=argparse.SUPPRESS)
    per_sub = per.add_subparsers(dest="action", required=True)
    per_sub.add_parser("list", help="recent periods and their status")
    pc = per_sub.add_parser("close", help="compute and store version 1 of a period")
    pc.add_argument("period", help="e.g. 2026-10 (monthly), 2026-10-2, 2026-W43")
    pc.add_argument("--force", action="store_true",
                    help="close before the FCR windows end (FCR figures provisional)")  # fmt: skip
    pc.add_argument("--by", help="who closes it (default: the OS user)")
    pr = per_sub.add_parser("restate", help="store version n+1 from the current counters")
    pr.add_argument("period")
    pr.add_argument("--reason", required=True, help="why (kept with the version)")
    pr.add_argument("--by", help="who restates it (default: the OS user)")
    per.set_defaults(func=cmd_periods)

    tok = sub.add_parser(
        "tokens", help="API tokens: make one, or hash one (docs/payroll.md#access)"
    )
    tok_sub = tok.add_subparsers(dest="action", required=True)
    tn = tok_sub.add_parser("new", help="a new random token and its config entry")
    tn.add_argument("name", help="who holds it, e.g. payroll-export (shown in the audit log)")
    tn.add_argument("--scope", action="append", required=True, choices=list(SCOPES),
                    help="repeat for several scopes")  # fmt: skip
    tok_sub.add_parser("hash", help="the sha256 entry of a token read from standard input")
    tok.set_defaults(func=cmd_tokens)

    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("--config", default=argparse.SUPPRESS)
    mig.set_defaults(func=cmd_migrate)

    sim = sub.add_parser("simulate", help="simulated center: post to ingest or write JSONL")
    sim.add_argument("--config", default=argparse.SUPPRESS)
    sim.add_argument("--url", default="http://127.0.0.1:8000")
    sim.add_argument("--out", help="write events to this JSONL file instead of posting")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--start", help="simulated start time, RFC 3339 (default now)")
    sim.add_argument("--duration", type=_duration, default=timedelta(hours=1))
    sim.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="time compression when posting live (events carry simulated times)",
    )
    sim.add_argument("--calls-per-hour", type=float, default=500.0, help="center-wide, at peak")
    sim.add_argument("--wait-ready", type=float, default=0.0, help="seconds to wait for ingest")
    sim.add_argument("--token", help="API token with the ingest and read scopes (auth on)")
    sim.add_argument(
        "--backfill-days",
        type=int,
        default=0,
        metavar="N",
        help="first post N days of history (from local midnight) as fast as ingest takes it",
    )
    sim.add_argument(
        "--backfill-resume",
        metavar="TIME",
        help="continue a backfill that stopped: post its events from TIME on (printed "
        "when it stopped; same --seed and --backfill-days)",
    )
    sim.add_argument(
        "--backfill-calls-per-hour",
        type=float,
        help="the history's peak rate (default: --calls-per-hour)",
    )
    sim.add_argument(
        "--understaff",
        nargs="?",
        const=_understaff("5m+30m"),
        type=_understaff,
        metavar="OFFSET+LENGTH",
        help=UNDERSTAFF_HELP,
    )
    sim.set_defaults(func=cmd_simulate)

    rep = sub.add_parser("replay", help="post a JSONL file of events to ingest")
    rep.add_argument("--config", default=argparse.SUPPRESS)
    rep.add_argument("file")
    rep.add_argument("--url", default="http://127.0.0.1:8000")
    rep.add_argument("--batch", type=int, default=2000)
    rep.add_argument("--token", help="API token with the ingest scope (auth on)")
    rep.add_argument("--resume", type=int, default=1, metavar="LINE",
                     help="start at this line (printed when a replay stops)")  # fmt: skip
    rep.add_argument("--patience", type=float, default=PATIENCE_S, metavar="SECONDS",
                     help="give up on a request ingest keeps refusing after this")  # fmt: skip
    rep.set_defaults(func=cmd_replay)

    rec = sub.add_parser(
        "reconcile",
        help="send again the FCR facts the FCR stage lacks (after a broker lost records; "
        "docs/operations.md#broker-loss)",
    )
    rec.add_argument("--config", default=argparse.SUPPRESS)
    rec.add_argument("--from", dest="from_", metavar="TIME", help="calls offered from (RFC 3339)")
    rec.add_argument("--to", metavar="TIME", help="calls offered before (RFC 3339)")
    rec.set_defaults(func=cmd_reconcile)

    qua = sub.add_parser(
        "quarantine", help="events set aside by the worker: list, replay (docs/operations.md)"
    )
    qua_sub = qua.add_subparsers(dest="action", required=True)
    ql = qua_sub.add_parser("list", help="what is waiting, oldest first, with its error")
    ql.add_argument("--limit", type=int, default=50)
    ql.add_argument("--replayed", action="store_true", help="include those already replayed")
    qr = qua_sub.add_parser("replay", help="send items back through the worker after a fix")
    qr.add_argument("--id", dest="ids", type=int, nargs="+", help="quarantine ids (from list)")
    qr.add_argument("--all", action="store_true", help="every item still waiting")
    for sp in (ql, qr):
        sp.add_argument("--config", default=argparse.SUPPRESS)
        sp.add_argument("--stage", choices=["events", "facts"])
        sp.add_argument("--url", default="http://127.0.0.1:8000", help="the API's base URL")
        sp.add_argument("--token", help="API token with the admin scope (auth on)")
    qua.set_defaults(func=cmd_quarantine)

    ast = sub.add_parser("asterisk", help="Asterisk queue_log: import history, follow live")
    ast_sub = ast.add_subparsers(dest="action", required=True)
    imp = ast_sub.add_parser("import", help="post queue_log files (history) to ingest")
    imp.add_argument("files", nargs="+", help="queue_log files, .gz or CSV exports, any order")
    imp.add_argument("--patience", type=float, default=PATIENCE_S, metavar="SECONDS",
                     help="give up on a request ingest keeps refusing after this")  # fmt: skip
    imp.add_argument("--resume", type=int, default=0, metavar="N",
                     help="send only the events of lines after the first N (printed when an "
                     "import stops; the same files)")  # fmt: skip
    fol = ast_sub.add_parser("follow", help="tail a live queue_log into ingest")
    fol.add_argument("file", help="e.g. /var/log/asterisk/queue_log")
    fol.add_argument("--checkpoint", help="default: <data_dir>/asterisk-follow.json")
    fol.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    fol.add_argument("--poll", type=float, default=0.25, help="seconds between looks (0.25)")
    for sp in (imp, fol):
        sp.add_argument("--config", default=argparse.SUPPRESS)
        sp.add_argument("--url", default="http://127.0.0.1:8000", help="ingest base URL")
        sp.add_argument("--token", help="API token with the ingest scope (auth on)")
    ast.set_defaults(func=cmd_asterisk)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    if getattr(args, "config", None):
        os.environ["CALLKPI_CONFIG"] = str(Path(args.config).resolve())
    try:
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        print(f"callkpi: {exc}", file=sys.stderr)
        return 2
    except IngestError as exc:
        # every command that feeds ingest (simulate, replay, asterisk import/follow)
        print(f"callkpi: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
