"""The operator's commands: `callkpi periods` (pay periods, against the database),
`callkpi tokens`, `callkpi quarantine` (through the API) and `callkpi reconcile`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from services.cli.common import add_config, api_json, aware, bearer, settings_of
from services.core.auth import SCOPES
from services.core.settings import ConfigError, Settings

if TYPE_CHECKING:
    from services.cli.common import Subparsers


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

    settings = settings_of(args)
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


def cmd_quarantine(args: argparse.Namespace) -> int:
    """`callkpi quarantine list | replay`: the events the worker set aside, through
    the API's admin endpoints (docs/operations.md#quarantine)."""
    import httpx

    with httpx.Client(base_url=args.url, timeout=120, headers=bearer(args)) as client:
        if args.action == "list":
            params: dict[str, Any] = {"limit": args.limit, "replayed": args.replayed}
            if args.stage:
                params["stage"] = args.stage
            r = client.get("/v1/admin/quarantine", params=params)
            body = api_json(r)
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
        replayed = api_json(client.post("/v1/admin/quarantine/replay", json=payload))["replayed"]
        print(f"replayed {len(replayed)} item(s): {' '.join(map(str, replayed)) or '-'}; the "
              "worker counts them again (what still fails is set aside again)")  # fmt: skip
        return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    """`callkpi reconcile`: compare what the FCR stage holds with what call assembly
    stored, and send again what is missing or stale (services/kpi_stream/reconcile.py)."""
    settings = settings_of(args)
    lo = aware(args.from_, "--from") if args.from_ else None
    hi = aware(args.to, "--to") if args.to else None
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


def register(sub: Subparsers) -> None:
    per = sub.add_parser("periods", help="pay periods: list, close (docs/payroll.md)")
    add_config(per)
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

    rec = sub.add_parser(
        "reconcile",
        help="send again the FCR facts the FCR stage lacks (after a broker lost records; "
        "docs/operations.md#broker-loss)",
    )
    add_config(rec)
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
        add_config(sp)
        sp.add_argument("--stage", choices=["events", "facts"])
        sp.add_argument("--url", default="http://127.0.0.1:8000", help="the API's base URL")
        sp.add_argument("--token", help="API token with the admin scope (auth on)")
    qua.set_defaults(func=cmd_quarantine)
