"""Queueing models for staffing: Erlang C (M/M/n) and Erlang A (M/M/n+M, callers
who abandon after an exponential patience). Pure functions of the offered load;
docs/staffing.md#models has the formulas and where they come from.

Everything is computed with recurrences over ratios, never factorials or powers
of large numbers: a 2,000-agent queue is as exact as a 5-agent one.

- Erlang B by its recurrence B(0) = 1, B(k) = A·B(k−1) / (k + A·B(k−1)); Erlang C
  from it, C = n·B / (n − A·(1 − B)) (ITU-T E.500 / Cooper, "Introduction to
  Queueing Theory", 2nd ed., sections 3.4-3.5).
- Erlang A (Palm's model, Garnett, Mandelbaum & Reiman 2002) by its stationary
  distribution, a birth-death chain: state n + m (m callers waiting) has weight
  π(n)·Π λ/(nμ + iθ), i = 1..m. An arrival that finds m waiting is position
  j = m + 1; it moves up at rate nμ + (j − 1)θ and abandons at rate θ, so it is
  answered with probability nμ/(nμ + jθ), after a wait that is a sum of
  exponentials of rates nμ + θ, …, nμ + jθ. That sum is −log(B)/θ with
  B ~ Beta(nμ/θ + 1, j) (their Laplace transforms agree), so its distribution is
  a regularized incomplete beta, whose terms follow a positive recurrence in j.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The largest staffing searched: beyond it the answer is "more than this", not a
# number (a queue of 100,000 Erlangs is a data error, not a center).
MAX_AGENTS = 100_000
# Terms of the Erlang A tail below this share of the mass are dropped: the error
# they leave is far under the 1e-9 the tests hold the models to.
_TAIL = 1e-15


@dataclass(frozen=True, slots=True)
class Prediction:
    """What a model predicts at `agents` for an interval's load."""

    agents: int
    service_level: float  # share of all arrivals answered within the threshold
    asa_seconds: float | None  # mean wait of the answered calls; None: none answered
    occupancy: float  # busy share of the agents' time
    abandon_rate: float  # share of arrivals that abandon (0 under Erlang C)
    wait_probability: float  # share of arrivals that wait at all


def erlang_b(agents: int, load: float) -> float:
    """Blocking probability of `agents` servers offered `load` Erlangs."""
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return b


def erlang_c(agents: int, load: float) -> float:
    """Probability that a caller waits (M/M/n); 1 when the queue is unstable."""
    if load <= 0:
        return 0.0
    if agents <= load:
        return 1.0
    b = erlang_b(agents, load)
    return agents * b / (agents - load * (1 - b))


def predict_c(agents: int, calls_per_s: float, aht_s: float, threshold_s: float) -> Prediction:
    """Erlang C at `agents`: no caller ever hangs up."""
    load = calls_per_s * aht_s
    if load <= 0:
        return Prediction(agents, 1.0, 0.0, 0.0, 0.0, 0.0)
    if agents <= load:  # the queue grows without end
        return Prediction(agents, 0.0, None, 1.0, 0.0, 1.0)
    pw = erlang_c(agents, load)
    sl = 1 - pw * math.exp(-(agents - load) * threshold_s / aht_s)
    asa = pw * aht_s / (agents - load)
    return Prediction(agents, sl, asa, load / agents, 0.0, pw)


def predict_a(
    agents: int, calls_per_s: float, aht_s: float, patience_s: float, threshold_s: float
) -> Prediction:
    """Erlang A at `agents` with a mean patience of `patience_s` (callers still
    waiting after an exponential time of that mean hang up)."""
    lam, mu, theta = calls_per_s, 1 / aht_s, 1 / patience_s
    if lam <= 0:
        return Prediction(agents, 1.0, 0.0, 0.0, 0.0, 0.0)
    n_mu = agents * mu
    # Log weights relative to state n (all agents busy): below it, w(k−1) =
    # w(k)·kμ/λ; above, w(n+m) = w(n+m−1)·λ/(nμ + mθ). Logarithms, as both sides
    # can pass a float's range (500 agents offered 1 Erlang; an overloaded queue's
    # weights grow for (λ − nμ)/θ states before they fall).
    cut = math.log(_TAIL)
    lows: list[float] = []  # log w(k), k = n−1, n−2, …, 0
    lw, peak = 0.0, 0.0
    for k in range(agents, 0, -1):
        ratio = k * mu / lam
        lw += math.log(ratio)
        lows.append(lw)
        peak = max(peak, lw)
        if ratio < 1 and lw < peak + cut:
            break
    logs: list[float] = []  # log w(n+m), m = 0, 1, …: arrivals that wait
    lw, m = 0.0, 0
    while True:
        logs.append(lw)
        peak = max(peak, lw)
        m += 1
        step = math.log(lam / (n_mu + m * theta))
        lw += step
        if step < 0 and lw < peak + cut:
            break
    mass_below = math.fsum(math.exp(x - peak) for x in lows)
    waiting = [math.exp(x - peak) for x in logs]
    total = mass_below + math.fsum(waiting)
    # Answered within the threshold: at once below n; from position j, answered
    # (nμ/(nμ + jθ)) within t: P(Beta(α, j) ≥ e^{−θt}) = 1 − I_z(α, j), with
    # I_z(α, 1) = z^α and I_z(α, j+1) = I_z(α, j) + T_j, T_{j+1} = T_j·(1−z)(α+j)/(j+1).
    alpha, z = n_mu / theta + 1, math.exp(-theta * threshold_s)
    incomplete = z**alpha
    term = incomplete * (1 - z) * alpha  # T_1 = z^α (1−z)^1 / (1·B(α,1)), B(α,1) = 1/α
    within = mass_below
    answered = mass_below
    wait_answered = 0.0  # Σ weight × P(answered) × mean wait given answered
    mean_wait = 0.0  # Σ 1/(nμ + iθ), i = 1..j
    for idx, weight in enumerate(waiting):
        j = idx + 1
        p_answer = n_mu / (n_mu + j * theta)
        mean_wait += 1 / (n_mu + j * theta)
        within += weight * p_answer * max(0.0, 1 - incomplete)
        answered += weight * p_answer
        wait_answered += weight * p_answer * mean_wait
        incomplete += term
        term *= (1 - z) * (alpha + j) / (j + 1)
    p_answered = answered / total
    served_load = lam * p_answered * aht_s
    return Prediction(
        agents,
        service_level=within / total,
        asa_seconds=wait_answered / answered if answered else None,
        occupancy=min(1.0, served_load / agents),
        abandon_rate=1 - p_answered,
        wait_probability=sum(waiting) / total,
    )


def required_agents(
    calls_per_s: float,
    aht_s: float,
    threshold_s: float,
    target: float,
    patience_s: float | None = None,
    max_occupancy: float | None = None,
) -> Prediction | None:
    """The fewest agents whose predicted service level is at least `target` (and
    occupancy at most `max_occupancy`), under Erlang A with `patience_s`, else
    Erlang C; with its prediction. 0 agents for no calls; None past MAX_AGENTS.
    Service level and occupancy are monotone in the staffing, so the search
    brackets, then bisects: about 2·log2 of the distance from the load."""
    if calls_per_s <= 0 or aht_s <= 0:
        return Prediction(0, 1.0, None, 0.0, 0.0, 0.0)

    def at(n: int) -> Prediction:
        if patience_s is None:
            return predict_c(n, calls_per_s, aht_s, threshold_s)
        return predict_a(n, calls_per_s, aht_s, patience_s, threshold_s)

    def meets(p: Prediction) -> bool:
        return p.service_level >= target and (max_occupancy is None or p.occupancy <= max_occupancy)

    # From the first staffing Erlang C could hold (more than the load), up or
    # down by doubling steps to a bracket: at(lo) misses (0 agents always does),
    # at(hi) meets.
    start = math.floor(calls_per_s * aht_s) + 1
    first = at(start)
    if meets(first):
        hi, best, step = start, first, 1
        while True:
            lo = max(0, hi - step)
            if lo == 0 or not meets(p := at(lo)):
                break
            hi, best, step = lo, p, step * 2
    else:
        lo, step = start, 1
        while True:
            hi = min(lo + step, MAX_AGENTS)
            if meets(best := at(hi)):
                break
            if hi == MAX_AGENTS:
                return None
            lo, step = hi, step * 2
    while hi - lo > 1:  # at(lo) misses, at(hi) meets
        mid = (lo + hi) // 2
        p = at(mid)
        if meets(p):
            hi, best = mid, p
        else:
            lo = mid
    return best
