"""The commands that feed ingest: `callkpi simulate` (a simulated center, live or
as history), `callkpi replay` (a JSONL file) and `callkpi asterisk import |
follow` (queue_log). The loops are services/ingest/feeding.py and
services/asterisk/importer.py and follower.py; these parse, wire and report."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from services.cli.common import (
    RUSH_HELP,
    UNDERSTAFF_HELP,
    add_config,
    aware,
    bearer,
    duration,
    log,
    settings_of,
    stopped,
    understaff,
)
from services.core.settings import ConfigError, Settings
from services.ingest.client import PATIENCE_S, IngestError, IngestStopped

if TYPE_CHECKING:
    import httpx

    from services.cli.common import Subparsers
    from services.simulator import SimConfig, Simulation

# The history stops this long before the live simulation starts: its last calls
# finish and its agents log out before the live agents log in.
BACKFILL_GAP = timedelta(minutes=30)
# With --rush, the history's last days are rushed too, so the agent has a rushed
# record to find at once (a sample over the last days, a day's window for the
# deviation alert) while the four weeks before them stay its usual baseline.
RUSH_DAYS = 3


def cmd_simulate(args: argparse.Namespace) -> int:
    from services.simulator import SimConfig, Simulation

    settings = settings_of(args)
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
        rush=rushing(settings, args.rush),
    )
    if cfg.rush:
        # the live calls and the history's last RUSH_DAYS days; the history before
        # is the agents' usual work, the baseline a rush is measured against
        log.info("rushing its calls from %s on: %s (talk at %d%% of usual)",
                 rush_start(start, bool(args.backfill_days)).isoformat(timespec="seconds"),
                 ", ".join(sorted(cfg.rush)), round(cfg.rush_talk_share * 100))  # fmt: skip
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
        history = backfill_sim(settings, args, start)
    plan = None
    if args.rostered:
        if args.out:
            raise ConfigError("--rostered: uploads the schedule to the API; not with --out")
        plan = roster(settings, cfg, history)
    sim = Simulation(cfg, list(settings.teams))
    if args.out:
        n = 0
        with open(args.out, "wb") as fh:
            for ev in sim.events():
                fh.write(orjson.dumps(ev) + b"\n")
                n += 1
        print(f"wrote {n} events to {args.out}", file=sys.stderr)
        return 0
    resume = aware(args.backfill_resume, "--backfill-resume") if args.backfill_resume else None
    try:
        return asyncio.run(_simulate_live(sim, args.url, args.speed, start, args.wait_ready,
                                          bearer(args), history, resume, plan))  # fmt: skip
    except IngestStopped as stop:
        again = " ".join(a for a in sys.argv if not a.startswith("--backfill-resume")).replace(
            sys.argv[0], "callkpi", 1
        )
        return stopped(stop, f"from {stop.resume} on (simulated time)",
                        f"{again} --backfill-resume {stop.resume}")  # fmt: skip
    except IngestError as exc:
        print(f"\nstopped: {exc}", file=sys.stderr)
        return 3


def rushing(settings: Settings, agents: list[str] | None) -> frozenset[str]:
    """--rush's agents, each one of the roster's."""
    known = {a for team in settings.teams for a in team.agents}
    for agent in agents or []:
        if agent not in known:
            some = ", ".join(sorted(known)[:3])
            raise ConfigError(f"--rush: {agent!r} is not an agent of the roster "
                              f"({len(known)} agents, e.g. {some})")  # fmt: skip
    return frozenset(agents or [])


def rush_start(live: datetime, history: bool) -> datetime:
    """Where a rush starts: RUSH_DAYS before the live calls when a history is
    posted first, else with the live calls."""
    return live - timedelta(days=RUSH_DAYS) if history else live


def roster(settings: Settings, cfg: SimConfig, history: Simulation | None) -> str:
    """The schedule the simulated agents work (services/simulator.py's
    plan_schedule, at the live rate), from the day before the first simulated day
    (its night shift) to the day after the last: CSV for POST /v1/schedules. Set
    on `cfg` and on the history's config."""
    from services.core.schedules import parse_csv
    from services.simulator import plan_schedule

    tz = settings.tz
    begin = history.cfg.start if history is not None else cfg.start
    first = begin.astimezone(tz).date() - timedelta(days=1)
    last = (cfg.start + cfg.duration).astimezone(tz).date() + timedelta(days=1)
    text = plan_schedule(cfg, list(settings.teams), first, (last - first).days + 1, tz)
    parsed = parse_csv(text, set(settings.staffing.activities), None, tz)
    if parsed.problems:  # the planner writes what the parser reads: a bug if not
        raise RuntimeError(f"simulated schedule refused: {parsed.problems[:3]}")
    cfg.schedule = parsed.segments
    if history is not None:
        history.cfg.schedule = parsed.segments
    return text


def backfill_sim(settings: Settings, args: argparse.Namespace, live: datetime) -> Simulation:
    """A simulation of the `--backfill-days` days before `live`, from local midnight
    (so a pay period that started then is covered whole)."""
    from services.simulator import SimConfig, Simulation

    first_day = (live.astimezone(settings.tz) - timedelta(days=args.backfill_days)).date()
    begin = datetime.combine(first_day, datetime.min.time(), settings.tz)
    rush = rushing(settings, args.rush)
    cfg = SimConfig(
        seed=args.seed,
        start=begin,
        duration=live - BACKFILL_GAP - begin,
        timezone=settings.timezone,
        calls_per_hour=args.backfill_calls_per_hour or args.calls_per_hour,
        rush=rush,
        rush_from=rush_start(live, True),
        # a rush over a thinned history: 12 agents' 3 days at 50 calls an hour
        # give each ~55 calls, and a 40% shorter talk time then stands 2.6 to 8
        # robust scores out of the team (measured over 15 seeds); at the live
        # 200, 4.8 to 18, past the 3.5 line every time
        rate_change=(rush_start(live, True), args.calls_per_hour) if rush else None,
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
    plan: str | None = None,
) -> int:
    import httpx

    from services.ingest.feeding import feed_paced, wait_ready

    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as client:
        await wait_ready(client, wait)
        if plan is not None:
            r = await client.post("/v1/schedules", content=plan.encode(),
                                  params={"note": "simulated roster"})  # fmt: skip
            if r.status_code != 201:
                raise IngestError(f"the schedule upload answered {r.status_code}: {r.text[:300]}")
            up = r.json()
            print(f"schedule: version {up['version']}, {up['agent_days']} agent-days "
                  f"{up['from_day']} to {up['to_day']}", flush=True)  # fmt: skip
        if history is not None:
            await backfill(client, history, resume)
        sent = await feed_paced(client, sim.events(), start, speed)
        print(f"simulation finished: {sent} events", flush=True)
    return 0


async def backfill(
    client: httpx.AsyncClient,
    sim: Simulation,
    resume: datetime | None = None,
    patience_s: float = PATIENCE_S,
) -> None:
    """Post the simulated history as fast as ingest takes it. Skipped when the
    center already has calls on its first day (a re-run over the same database:
    history simulated again with another seed would count twice), unless it resumes
    one that stopped: the same seed gives the same events and ids, and those from
    `resume` on are posted."""
    import time

    import httpx

    from services.ingest.feeding import feed_history

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
    change = sim.cfg.rate_change
    busier = ""
    if change is not None:
        busier = f", {change[1]:g} from {change[0].isoformat(timespec='minutes')} (the rushed days)"
    print(f"backfill: simulating {begin.date()} to {end.isoformat(timespec='minutes')} "
          f"at {sim.cfg.calls_per_hour:g} calls/h at peak{busier}", flush=True)  # fmt: skip
    started = time.monotonic()
    accepted = await feed_history(client, sim.events(), begin, end, resume=resume,
                                  patience_s=patience_s)  # fmt: skip
    print(f"backfill: done, {accepted:,} events in {time.monotonic() - started:.0f} s; "
          "the worker may take a few seconds more to count them", flush=True)  # fmt: skip


def cmd_replay(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"callkpi replay: no such file: {path}")
    try:
        return asyncio.run(_replay(path, path.stat().st_size, args.url, args.batch,
                                   bearer(args), args.resume, args.patience))  # fmt: skip
    except IngestStopped as stop:
        again = f"callkpi replay {args.file} --resume {stop.resume}"
        return stopped(stop, f"from line {stop.resume:,} on", again)


async def _replay(
    path: Path,
    total: int,
    url: str,
    batch_size: int,
    headers: dict[str, str],
    resume: int = 1,
    patience_s: float = PATIENCE_S,
) -> int:
    import httpx

    from services.ingest.feeding import feed_file

    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
        read, sent, malformed = await feed_file(client, path, total, batch_size, resume=resume,
                                                patience_s=patience_s)  # fmt: skip
    print(
        f"\nreplayed {read} events, {sent} accepted, {malformed} malformed lines skipped",
        file=sys.stderr,
    )
    return 0 if sent == read and not malformed else 1


def cmd_asterisk(args: argparse.Namespace) -> int:
    import httpx

    from services.asterisk.follower import Follower, FollowMetrics, serve_metrics
    from services.asterisk.importer import import_files
    from services.asterisk.queue_log import Mapper

    settings = settings_of(args)
    cfg = settings.asterisk
    mapper = Mapper(cfg.call_per_queue, cfg.strip_agent_technology, dict(cfg.exit_keys),
                    cfg.withdraw_reason)  # fmt: skip

    async def run_import() -> int:
        paths = [Path(f) for f in args.files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise SystemExit(f"no such file: {', '.join(missing)}")
        async with httpx.AsyncClient(base_url=args.url, timeout=60, headers=bearer(args)) as c:
            try:
                out = await import_files(paths, c, mapper, settings.tz, cfg.reorder_seconds,
                                         resume=args.resume, patience_s=args.patience)  # fmt: skip
            except IngestStopped as stop:
                again = " ".join(["callkpi asterisk import", *args.files, "--resume",
                                  str(stop.resume)])  # fmt: skip
                return stopped(stop, f"after line {stop.resume:,} (in reading order)", again)
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
        async with httpx.AsyncClient(base_url=args.url, timeout=60, headers=bearer(args)) as c:
            follower = Follower(Path(args.file), checkpoint, c, mapper, settings.tz,
                                poll_s=args.poll, metrics=metrics)  # fmt: skip
            await follower.run(stop)
        return 0

    return asyncio.run(run_import() if args.action == "import" else run_follow())


def register(sub: Subparsers) -> None:
    sim = sub.add_parser("simulate", help="simulated center: post to ingest or write JSONL")
    add_config(sim)
    sim.add_argument("--url", default="http://127.0.0.1:8000")
    sim.add_argument("--out", help="write events to this JSONL file instead of posting")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--start", help="simulated start time, RFC 3339 (default now)")
    sim.add_argument("--duration", type=duration, default=timedelta(hours=1))
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
        const=understaff("5m+30m"),
        type=understaff,
        metavar="OFFSET+LENGTH",
        help=UNDERSTAFF_HELP,
    )
    sim.add_argument(
        "--rush",
        action="append",
        metavar="AGENT",
        help=RUSH_HELP,
    )
    sim.add_argument(
        "--rostered",
        action="store_true",
        help="agents work shifts planned for the load (uploaded to POST /v1/schedules; "
        "needs the admin scope with auth on), some late or absent, instead of all of "
        "them being on the phones around the clock",
    )
    sim.set_defaults(func=cmd_simulate)

    rep = sub.add_parser("replay", help="post a JSONL file of events to ingest")
    add_config(rep)
    rep.add_argument("file")
    rep.add_argument("--url", default="http://127.0.0.1:8000")
    rep.add_argument("--batch", type=int, default=2000)
    rep.add_argument("--token", help="API token with the ingest scope (auth on)")
    rep.add_argument("--resume", type=int, default=1, metavar="LINE",
                     help="start at this line (printed when a replay stops)")  # fmt: skip
    rep.add_argument("--patience", type=float, default=PATIENCE_S, metavar="SECONDS",
                     help="give up on a request ingest keeps refusing after this")  # fmt: skip
    rep.set_defaults(func=cmd_replay)

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
        add_config(sp)
        sp.add_argument("--url", default="http://127.0.0.1:8000", help="ingest base URL")
        sp.add_argument("--token", help="API token with the ingest scope (auth on)")
    ast.set_defaults(func=cmd_asterisk)
