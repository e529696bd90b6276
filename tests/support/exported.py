"""The metric names a running API exports, for checking what deploy/ files use."""

from __future__ import annotations

import re

import httpx

from tests.support.stack import Stack


def exported_metrics(stack: Stack, worker: bool = False) -> set[str]:
    """Every family is declared (# TYPE) even when it has no sample yet; a counter
    family `x` is scraped as `x_total`, so both names count. `worker`: the
    worker's /metrics instead of the API's."""
    if worker:
        text = httpx.get(f"http://127.0.0.1:{stack.worker_port}/metrics", timeout=10).text
    else:
        text = stack.get("/metrics").text
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (callkpi_\w+) (\w+)", text, re.MULTILINE):
        names.add(name)
        if kind == "counter" and not name.endswith("_total"):
            names.add(name + "_total")
    return names


def metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\bcallkpi_\w+", expr))
