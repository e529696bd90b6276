"""Reading and checking YAML files (the config, the scorecards) the same way:
one message per problem, naming the file and the key."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError


def read_yaml(path: Path, label: str, error: type[Exception]) -> Any:
    """The parsed file; `error(f"{label} {path}: …")` when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{label} {path}: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as exc:
        # ValueError: YAML reads 2026-13-01 as a date and the calendar refuses it
        raise error(f"{label} {path}: not valid YAML: {exc}") from exc


def error_lines(exc: ValidationError, docs: str) -> list[str]:
    """`  key.path: message` per error; a misspelt key points to `docs`."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key (check spelling; see {docs})"
        lines.append(f"  {key}: {msg}")
    return lines


def repeated(values: Iterable[str]) -> list[str]:
    """The values that occur more than once, sorted."""
    seen: set[str] = set()
    twice: set[str] = set()
    for v in values:
        (twice if v in seen else seen).add(v)
    return sorted(twice)


def digest(data: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of `data` (sorted keys): the same data
    gives the same digest whatever order it was built in."""
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
