"""The production roles, one process each: `callkpi ingest | worker | api`, and
`callkpi migrate`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from services.cli.common import add_config, log, serve, settings_of, warn_dev_key

if TYPE_CHECKING:
    from services.cli.common import Subparsers


def cmd_migrate(args: argparse.Namespace) -> int:
    from services.core.db import require_database_url
    from services.migrations import upgrade

    settings = settings_of(args)
    upgrade(require_database_url(settings))
    log.info("database schema is up to date")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from services.kpi_stream.worker import create_worker_app

    settings = settings_of(args)  # a bad config stops here, before any child starts
    processes = args.processes
    if processes == "auto":
        from services.cli.workers import cpu_count

        processes = cpu_count()
    if int(processes) > 1:
        from services.cli.workers import supervise

        return supervise(int(processes), args.host, args.port)
    log.info("worker health on http://%s:%d/healthz", args.host, args.port)
    serve(create_worker_app(settings), args.host, args.port, settings)
    return 0


def _processes(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of processes from 1 to 64, or auto")
    return n


def cmd_api(args: argparse.Namespace, *, read: bool = True, ingest: bool = False) -> int:
    from services.api.app import create_app

    settings = settings_of(args)
    if ingest:
        warn_dev_key(settings)
    serve(create_app(settings, read=read, ingest=ingest), args.host, args.port, settings)
    return 0


def register(sub: Subparsers) -> None:
    for name, helptext, port in (
        ("worker", "the Faust stream worker", 8001),
        ("api", "the read API and /metrics", 8000),
        ("ingest", "the ingest endpoint", 8002),
    ):
        sp = sub.add_parser(name, help=helptext)
        add_config(sp)
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--port", type=int, default=port)
    sub.choices["worker"].add_argument(
        "--processes", type=_processes, default=1, metavar="N|auto",
        help="run N worker processes sharing the partitions (auto: one per core); "
        "health on --port, --port+1, ...",
    )  # fmt: skip
    sub.choices["worker"].set_defaults(func=cmd_worker)
    sub.choices["api"].add_argument(
        "--with-ingest", action="store_true", help="also serve POST /v1/events"
    )
    sub.choices["api"].set_defaults(func=lambda a: cmd_api(a, read=True, ingest=a.with_ingest))
    sub.choices["ingest"].set_defaults(func=lambda a: cmd_api(a, read=False, ingest=True))

    mig = sub.add_parser("migrate", help="apply database migrations")
    add_config(mig)
    mig.set_defaults(func=cmd_migrate)
