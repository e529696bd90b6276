"""`callkpi dev`: everything on one machine. The embedded broker and Postgres
(unless the configuration points at real ones), the migrations, the worker and
optionally the simulator as children (services/devstack.py's Stack), and ingest
with the read API in this process; the banner says where to look and which pay
period the demo can close."""

from __future__ import annotations

import argparse
import os
import signal
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from services.cli.common import (
    RUSH_HELP,
    UNDERSTAFF_HELP,
    add_config,
    serve,
    understaff_text,
    warn_dev_key,
)
from services.core.settings import Settings, load_settings
from services.core.timewin import floor_minute, iso

if TYPE_CHECKING:
    from services.cli.common import Subparsers
    from services.payroll.periods import Period


def cmd_dev(args: argparse.Namespace) -> int:
    from services.api.app import create_app
    from services.devstack import Stack, free_port

    if args.config:
        os.environ["CALLKPI_CONFIG"] = str(Path(args.config).resolve())
    settings = load_settings()
    data_dir = Path(args.data_dir or settings.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(data_dir)
    try:
        if not settings.kafka_bootstrap:
            stack.embedded_broker()
        if not settings.database_url:
            stack.embedded_postgres(data_dir / "postgres")
        # this process serves ingest and the API with the children's settings
        os.environ.update(stack.env)
        settings = load_settings()
        from services.core.db import require_database_url

        stack.migrate(require_database_url(settings))
        stack.spawn("worker", "worker", "--port", str(free_port()))
        base = f"http://{args.host}:{args.port}"
        now = datetime.now(UTC)
        plan = payroll_plan(settings, now)
        backfill: int = args.backfill_days
        if backfill is None:
            backfill = (
                0 if plan.closable is None else days_since(settings, plan.closable.start, now)
            )
        if args.simulate:
            stack.spawn(
                "simulator", "simulate", "--url", base, "--duration", "24h", "--wait-ready", "60",
                # The example roster's 32 agents on planned shifts (--rostered),
                # some late, a few absent: ~85% answered at the peak, agents busy
                # about half their time on the phones, 15 calls per 15 minutes
                # center-wide at night (the daily profile bottoms out at 30%)
                "--calls-per-hour", "200", "--rostered",
                "--backfill-days", str(backfill),
                "--backfill-calls-per-hour", str(backfill_rate(backfill)),
                *(["--understaff", args.understaff] if args.understaff else []),
                *(arg for agent in args.rush or [] for arg in ("--rush", agent)),
                console=True,  # progress on the console, warnings in the log
            )  # fmt: skip
        print(
            "\ncallkpi is starting. Logs in " + str(data_dir) + "\n"
            f"  wallboard   {base}/wallboard  (agents: {base}/wallboard/agents)\n"
            f"  reports     {base}/reports  (a day per team; click a figure for its calls)\n"
            f"  figures     {base}/v1/kpis/center/all?window=15m\n"
            f"  teams       {base}/v1/kpis/team?window=15m\n"
            f"  API docs    {base}/docs\n"
            f"  metrics     {base}/metrics\n"
            f"  ingest      POST {base}/v1/events\n"
            + ("  simulator   feeding a simulated center\n" if args.simulate else "")
            + qa_banner(base, settings, now, args.rush if args.simulate and backfill else [])
            + payroll_banner(base, plan, settings, backfill if args.simulate else 0)
            + "Press Ctrl-C to stop everything.\n",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        warn_dev_key(settings)
        serve(create_app(settings, read=True, ingest=True), args.host, args.port, settings)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        print("callkpi stopped.", flush=True)
    return 0


@dataclass(frozen=True)
class PayrollPlan:
    """Which pay period the demo fills with history and tells the user to close."""

    previous: Period | None  # the period before the current one (explicit calendar: maybe none)
    closable: Period | None  # the newest one that can be closed now without force
    previous_from: datetime | None  # when `previous` becomes closable


def payroll_plan(settings: Settings, now: datetime) -> PayrollPlan:
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


def backfill_rate(days: int) -> int:
    if days <= BACKFILL_EVENTS_DAYS:
        return BACKFILL_CALLS_PER_HOUR
    return max(BACKFILL_CALLS_PER_HOUR * BACKFILL_EVENTS_DAYS // days, 20)


def days_since(settings: Settings, start: datetime, now: datetime) -> int:
    today = now.astimezone(settings.tz).date()
    return max((today - start.astimezone(settings.tz).date()).days, 0)


def qa_banner(base: str, settings: Settings, now: datetime, rush: list[str] | None) -> str:
    """Where the listening sample is; with --rush, the sample of the rushed days
    (the history's last RUSH_DAYS, which the simulator rushes) that names the
    agent first (docs/qa.md)."""
    from services.cli.feeds import RUSH_DAYS
    from services.payroll.periods import containing

    team = settings.teams[0].id if settings.teams else None
    current = containing(now, settings.periods, settings.tz)
    if team is None or current is None:
        return ""
    out = f"  QA sample   {base}/v1/qa/sample?team={team}&period={current.id}\n"
    for agent in rush or []:
        # from a minute after the rush began to the minute the history ends
        start = floor_minute(now - timedelta(days=RUSH_DAYS)) + timedelta(minutes=2)
        end = floor_minute(now)
        query = urlencode({"team": settings.agent_team(agent), "from": iso(start, settings.tz),
                           "to": iso(end, settings.tz)})  # fmt: skip
        alerts = f"{base}/v1/alerts?kind=agent&id={agent}"
        out += (f"  rushing     {agent} for the last {RUSH_DAYS} days: its sample "
                f"{base}/v1/qa/sample?{query}\n"
                f"              its deviation alerts {alerts}\n")  # fmt: skip
    return out


def payroll_banner(base: str, plan: PayrollPlan, settings: Settings, backfill: int) -> str:
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


def register(sub: Subparsers) -> None:
    dev = sub.add_parser("dev", help="everything on one machine with embedded broker and Postgres")
    add_config(dev)
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
        type=understaff_text,
        metavar="OFFSET+LENGTH",
        help=UNDERSTAFF_HELP,
    )
    dev.add_argument("--rush", action="append", metavar="AGENT", help=RUSH_HELP)
    dev.set_defaults(func=cmd_dev)
