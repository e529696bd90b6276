"""deploy/prometheus/rules.yml: valid for Prometheus, behaves like the built-in
evaluator on its unit tests (rules.test.yml), and names only metrics the API
exports."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.exported import exported_metrics, metrics_in
from tests.support.stack import Stack

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "rules.yml"


def _exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def test_rules_pass_promtool_check_and_unit_tests_or_parse_where_promtool_is_missing() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        import promql_parser

        for expr in _exprs():
            promql_parser.parse(expr)  # raises on a syntax error
        doc = yaml.safe_load(RULES.read_text())
        rule = doc["groups"][0]["rules"][0]
        assert rule["for"] == "2m" and ">= 20" in rule["expr"]
        pytest.skip("promtool not installed (Debian package prometheus): rules parsed only")
    for args in (["check", "rules", "rules.yml"], ["test", "rules", "rules.test.yml"]):
        done = subprocess.run(
            [promtool, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_callkpi_metric_in_the_rules_is_exported_by_the_api_or_the_worker(
    stack: Stack,
) -> None:
    exported = exported_metrics(stack) | exported_metrics(stack, worker=True)
    used = {name for expr in _exprs() for name in metrics_in(expr)}
    assert used and used <= exported, used - exported
