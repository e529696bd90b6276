"""The metric names a running API exports, for checking what deploy/ files use."""

from __future__ import annotations

import re

from tests.stack import Stack


def exported_metrics(stack: Stack) -> set[str]:
    """Every family is declared (# TYPE) even when it has no sample yet; a counter
    family `x` is scraped as `x_total`, so both names count."""
    text = stack.get("/metrics").text
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (callkpi_\w+) (\w+)", text, re.MULTILINE):
        names.add(name)
        if kind == "counter" and not name.endswith("_total"):
            names.add(name + "_total")
    return names


def metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\bcallkpi_\w+", expr))
