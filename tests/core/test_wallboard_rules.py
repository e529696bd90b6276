"""The wallboard's time-in-state limits as configured: durations per state and
per not-ready reason, and bad ones refused at start with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.core.settings import ConfigError, load_settings
from tests.support.databases import EXAMPLE_CONFIG


def test_the_example_limits_lunch_apart_from_other_not_ready_time() -> None:
    limits = load_settings(EXAMPLE_CONFIG).wallboard.seconds()
    assert limits == {
        "states": {"on_call": 900.0, "wrap_up": 120.0, "not_ready": 900.0},
        "reasons": {"break": 900.0, "lunch": 2100.0},
    }


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("wallboard: {state_limits: {napping: 5m}}\n", "unknown state(s) ['napping']"),
        ("wallboard: {state_limits: {on_call: long}}\n", "wallboard.state_limits.on_call"),
        ("wallboard: {reason_limits: {lunch: 1 hour}}\n", "wallboard.reason_limits.lunch"),
        ("wallboard: {oldest_waiting: 500}\n", "wallboard.oldest_waiting"),
    ],
)
def test_a_bad_limit_fails_at_start_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert key in str(err.value)
