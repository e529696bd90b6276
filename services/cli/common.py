"""What the command groups share: logging, settings, serving an app, the
arguments several commands take, and how a feed that stopped says so."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from services.core.settings import DEV_HASH_KEY, ConfigError, Settings, load_settings
from services.ingest.client import IngestError, IngestStopped

if TYPE_CHECKING:  # imported where used: each command loads only what it needs
    import httpx
    from fastapi import FastAPI

    # what each command group's `register` adds its commands to
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

log = logging.getLogger("callkpi")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("aiokafka", "faust", "mode", "kafka", "uvicorn.access", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def settings_of(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def add_config(parser: argparse.ArgumentParser) -> None:
    """`--config` after the command too (`callkpi api --config F`)."""
    parser.add_argument("--config", default=argparse.SUPPRESS)


def warn_dev_key(settings: Settings) -> None:
    if settings.hash_key.get_secret_value() == DEV_HASH_KEY:
        log.warning(
            "hash_key is the built-in development key: set CALLKPI_HASH_KEY to a secret "
            "before taking real caller ids (they are stored only as keyed hashes)"
        )


def serve(app: FastAPI, host: str, port: int, settings: Settings) -> None:
    import uvicorn

    from services.api.http_limits import guarded_h11

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                http=guarded_h11(settings.http_head_timeout_seconds))  # fmt: skip


def duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"duration like 90s, 15m, 2h or 1d: {text!r}") from None


def understaff(text: str) -> tuple[timedelta, timedelta]:
    start, plus, length = text.partition("+")
    if not plus:
        raise argparse.ArgumentTypeError(f"OFFSET+LENGTH like 5m+30m: {text!r}")
    return duration(start), duration(length)


def understaff_text(text: str) -> str:
    understaff(text)  # checked here, passed on to the simulator as written
    return text


RUSH_HELP = (
    "AGENT (repeatable): the agent rushes its calls, talking 60%% of its usual time: "
    "the live calls and, with --backfill-days, the history's last 3 days; the history "
    "before is its usual work, the baseline a rush is measured against (docs/qa.md)"
)

UNDERSTAFF_HELP = (
    "OFFSET+LENGTH (default 5m+30m): from OFFSET after the start, for LENGTH, each team "
    "keeps on the phones half the agents its load needs, so the answer rate dips below "
    "the alert lines"
)


def aware(text: str, flag: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{flag}: not an RFC 3339 time: {text!r}") from None
    if when.tzinfo is None:
        raise ConfigError(f"{flag}: needs a UTC offset: {text!r}")
    return when


def bearer(args: argparse.Namespace) -> dict[str, str]:
    """The Authorization header of `--token`, for the API clients."""
    return {"Authorization": f"Bearer {args.token}"} if args.token else {}


def api_json(r: httpx.Response) -> Any:
    if r.status_code != 200:
        raise IngestError(f"API answered {r.status_code}: {r.text[:500]}")
    return r.json()


def stopped(stop: IngestStopped, where: str, again: str) -> int:
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
