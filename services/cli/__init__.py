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

from services.cli.main import main

__all__ = ["main"]
