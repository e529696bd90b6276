"""The judged figures as sums over a volume (services/core/qa_figures.py)."""

from __future__ import annotations

from datetime import date

import pytest

from services.core.qa_figures import CHANGE_FIELDS, FIGURES, sample


def test_rona_rate_is_presented_less_answered_over_presented() -> None:
    rona = next(f for f in FIGURES if f.name == "rona_rate")
    s = sample(rona, {"presented": 40, "answered": 37}, date(2026, 4, 6))
    assert (s.total, s.volume) == (3, 40)
    talk = next(f for f in FIGURES if f.name == "avg_talk_seconds")
    assert sample(talk, {"talk_us": 90_000_000, "handled": 3}, date(2026, 4, 6)).total == (
        pytest.approx(90.0)
    )
    assert sample(talk, None, date(2026, 4, 6)).volume == 0  # an agent with no calls


def test_each_figure_has_a_change_field_for_the_deviation_alerts() -> None:
    assert CHANGE_FIELDS["avg_talk_seconds_change"].name == "avg_talk_seconds"
    assert len(CHANGE_FIELDS) == len(FIGURES)
