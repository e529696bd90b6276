"""The `qa` settings set the thresholds of abnormal figures (docs/qa.md)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.core.deviation import Direction, assess
from services.core.qa_rules import QaSettings
from tests.support.samples import period, team_with, weeks_of


def test_a_stricter_change_threshold_no_longer_flags_a_fall_of_a_quarter() -> None:
    current, history, team = period(150), weeks_of(200, 30), team_with(150)
    assert assess(current, history, team, QaSettings().rule(Direction.DOWN)).abnormal
    strict = QaSettings(min_change=0.3).rule(Direction.DOWN)
    assert not assess(current, history, team, strict).abnormal


def test_thresholds_outside_their_range_and_unknown_keys_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="min_team"):
        QaSettings(min_team=1)
    with pytest.raises(ValidationError, match="min_chnage"):
        QaSettings.model_validate({"min_chnage": 0.3})
