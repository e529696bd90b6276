"""The alert state machine against a replay written the obvious way, and the
guards one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.alerting.machine import AlertState, Observation, Open, steps
from services.core.alert_rules import AlertRule

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Monday
RULE = AlertRule.model_validate(
    {
        "id": "r",
        "kind": "team",
        "thresholds": {"peak": 0.85, "off_peak": 0.90},
        "min_calls": 20,
        "for": "2m",
        "clear_margin": 0.02,
    }
)


def obs(
    value: float | None, calls: int = 40, minute: float = 0, threshold: float | None = 0.85
) -> Observation:
    cls = "peak" if threshold == 0.85 else ("off_peak" if threshold else "closed")
    return Observation(T0 + timedelta(minutes=minute), cls, threshold, value, calls)  # type: ignore[arg-type]


def run(observations: list[Observation], rule: AlertRule = RULE) -> list[tuple[float, AlertState]]:
    """Feed observations in order; return (minute, new state) per transition."""
    current: Open | None = None
    out = []
    for o in observations:
        for step in steps(rule, current, o):
            out.append(((o.at - T0).total_seconds() / 60, step.to))
            if step.to == "pending":
                current = Open("pending", o.at)
            elif step.to == "firing":
                assert current is not None
                current = Open("firing", current.pending_since)
            else:
                current = None
    return out


def test_dip_with_enough_calls_fires_after_for_and_not_before() -> None:
    got = run([obs(0.80, minute=m) for m in (0, 1, 1.99, 2, 3)])
    assert got == [(0, "pending"), (2, "firing")]


def test_same_rate_fires_off_peak_at_90_but_not_in_peak_at_85() -> None:
    assert run([obs(0.87, minute=m) for m in (0, 2)]) == []
    assert run([obs(0.87, minute=m, threshold=0.90) for m in (0, 2)]) == [
        (0, "pending"),
        (2, "firing"),
    ]


def test_thin_volume_never_opens_an_alert() -> None:
    assert run([obs(0.10, calls=19, minute=m) for m in range(10)]) == []
    assert run([obs(None, calls=0, minute=m) for m in range(10)]) == []


def test_recovery_before_for_cancels_and_a_new_dip_starts_the_clock_again() -> None:
    got = run([obs(0.80, minute=0), obs(0.86, minute=1), obs(0.80, minute=2), obs(0.8, minute=3)])
    assert got == [(0, "pending"), (1, "cancelled"), (2, "pending")]


def test_recovery_inside_the_margin_keeps_firing_above_it_resolves() -> None:
    fired = [obs(0.80, minute=0), obs(0.80, minute=2)]
    assert run([*fired, obs(0.86, minute=3), obs(0.8699, minute=4)]) == [
        (0, "pending"),
        (2, "firing"),
    ]
    assert run([*fired, obs(0.86, minute=3), obs(0.87, minute=4)])[-1] == (4, "resolved")


def test_firing_alert_stays_firing_on_thin_volume_and_resolves_when_the_window_empties() -> None:
    fired = [obs(0.80, minute=0), obs(0.80, minute=2)]
    assert run([*fired, obs(0.5, calls=3, minute=3)]) == [(0, "pending"), (2, "firing")]
    assert run([*fired, obs(None, calls=0, minute=3)])[-1] == (3, "resolved")


def test_closed_schedule_resolves_a_firing_alert_and_cancels_a_pending_one() -> None:
    fired = [obs(0.80, minute=0), obs(0.80, minute=2)]
    assert run([*fired, obs(0.5, minute=3, threshold=None)])[-1] == (3, "resolved")
    assert run([obs(0.5, minute=0), obs(0.5, minute=1, threshold=None)])[-1] == (1, "cancelled")


def test_for_zero_fires_on_the_first_breach() -> None:
    rule = RULE.model_copy(update={"hold": timedelta(0)})
    assert run([obs(0.5)], rule) == [(0, "pending"), (0, "firing")]


def test_above_direction_mirrors_below() -> None:
    rule = AlertRule.model_validate(
        {
            "id": "asa",
            "field": "asa_seconds",
            "kind": "queue",
            "direction": "above",
            "thresholds": {"peak": 30},
            "for": "0s",
            "clear_margin": 5,
        }
    )
    got = run(
        [obs(31, threshold=30), obs(26, minute=1, threshold=30), obs(25, minute=2, threshold=30)],
        rule,
    )
    assert got == [(0, "pending"), (0, "firing"), (2, "resolved")]


def reference(observations: list[Observation], rule: AlertRule) -> list[tuple[float, str]]:
    """The rules of docs/alerting.md restated over the whole sequence at once."""

    def bad(o: Observation) -> bool:
        return (o.threshold is not None and o.value is not None and o.calls >= rule.min_calls
                and o.value < o.threshold)  # fmt: skip

    out: list[tuple[float, str]] = []
    i = 0
    while i < len(observations):
        if not bad(observations[i]):
            i += 1
            continue
        start = observations[i].at
        out.append(((start - T0).total_seconds() / 60, "pending"))
        j = i
        while (
            j < len(observations)
            and bad(observations[j])
            and observations[j].at - start < rule.hold
        ):
            j += 1
        if j == len(observations):
            return out
        o = observations[j]
        minute = (o.at - T0).total_seconds() / 60
        if not bad(o):
            out.append((minute, "cancelled"))
            i = j  # this observation may not open a new one (it is no breach)
            continue
        out.append((minute, "firing"))
        k = j + 1
        while k < len(observations):
            o = observations[k]
            if (o.threshold is None or o.value is None
                    or o.value >= o.threshold + rule.clear_margin):  # fmt: skip
                out.append(((o.at - T0).total_seconds() / 60, "resolved"))
                break
            k += 1
        i = k + 1
    return out


@st.composite
def sequences(draw: st.DrawFn) -> list[Observation]:
    minutes = sorted(set(draw(st.lists(st.integers(0, 60), min_size=1, max_size=40))))
    return [
        obs(
            draw(
                st.one_of(
                    st.none(), st.sampled_from([0.5, 0.84, 0.85, 0.86, 0.87, 0.89, 0.9, 0.92, 1.0])
                )
            ),
            calls=draw(st.sampled_from([0, 5, 19, 20, 100])),
            minute=m,
            threshold=draw(st.sampled_from([0.85, 0.85, 0.90, None])),
        )
        for m in minutes
    ]


@given(sequences())
def test_machine_equals_the_reference_on_any_sequence(seq: list[Observation]) -> None:
    assert run(seq) == reference(seq, RULE)
