"""The `callkpi` parser, built from each command group's `register`, and the
exit codes: 2 for a configuration error, 1 for ingest refusing for good, 3 for a
feed that gave up (it says where to resume)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import services.cli
from services.cli import admin, dev, export, feeds, roles
from services.cli.common import setup_logging
from services.core.settings import ConfigError
from services.ingest.client import IngestError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="callkpi", description=services.cli.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--config", help="YAML config file (or CALLKPI_CONFIG)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (dev, roles, admin, feeds, export):
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
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
