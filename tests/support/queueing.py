"""A straightforward Erlang A (M/M/n+M) for the tests, computed another way than
services/core/erlang.py: the stationary distribution in exact fractions over a
truncated state space, and each waiting caller's chance of being answered in
time by uniformisation of its own small chain (position in line, answered,
abandoned), step by step. Slow, and only for small queues; no Beta identity, no
logarithms, no recurrences shared with the code it checks."""

from __future__ import annotations

import math
from fractions import Fraction


def stationary(
    agents: int, lam: Fraction, mu: Fraction, theta: Fraction, waiting: int
) -> list[Fraction]:
    """P(k callers in the system), k = 0..agents + waiting (the rest is dropped)."""
    w = [Fraction(1)]
    for k in range(1, agents + waiting + 1):
        death = min(k, agents) * mu + max(k - agents, 0) * theta
        w.append(w[-1] * lam / death)
    total = sum(w)
    return [x / total for x in w]


def answered_within(position: int, agents: int, mu: float, theta: float, t: float) -> float:
    """P(answered within t) of a caller `position`-th in line (1: next), by
    uniformisation: jumps at rate Λ, each a step of the embedded chain."""
    n_mu = agents * mu
    rate = n_mu + position * theta
    # enough jumps that the Poisson(Λt) tail beyond them is below 1e-15
    steps = int(rate * t + 12 * math.sqrt(rate * t) + 40)
    # p[i]: in line at position i (index 0 unused); answered accumulates
    p = [0.0] * (position + 1)
    p[position] = 1.0
    answered_after = [0.0]  # P(answered within k jumps), k = 0, 1, ...
    done = 0.0
    for _ in range(steps):
        nxt = [0.0] * (position + 1)
        for i in range(1, position + 1):
            if p[i] == 0.0:
                continue
            forward = (n_mu + (i - 1) * theta) / rate
            leave = (n_mu + i * theta) / rate
            nxt[i] += p[i] * (1 - leave)
            if i == 1:
                done += p[i] * forward
            else:
                nxt[i - 1] += p[i] * forward
        p = nxt
        answered_after.append(done)
    # Poisson(Λt) weights of the number of jumps by t
    x = rate * t
    total, weight = 0.0, math.exp(-x)
    for k in range(steps + 1):
        total += weight * answered_after[k]
        weight *= x / (k + 1)
    return total


def service_level(
    agents: int, calls_per_s: float, aht_s: float, patience_s: float, t: float, waiting: int = 60
) -> float:
    """Share of arrivals answered within t (arrivals see the stationary state)."""
    lam, mu = Fraction(calls_per_s), Fraction(1) / Fraction(aht_s)
    theta = Fraction(1) / Fraction(patience_s)
    pi = stationary(agents, lam, mu, theta, waiting)
    sl = float(sum(pi[:agents]))
    for m in range(waiting):
        sl += float(pi[agents + m]) * answered_within(m + 1, agents, float(mu), float(theta), t)
    return sl


def abandon_rate(
    agents: int, calls_per_s: float, aht_s: float, patience_s: float, waiting: int = 60
) -> float:
    """Share of arrivals that abandon: an arrival at position j is answered with
    probability Π (nμ + (i−1)θ)/(nμ + iθ), i = 1..j, multiplied out step by step."""
    lam, mu = Fraction(calls_per_s), Fraction(1) / Fraction(aht_s)
    theta = Fraction(1) / Fraction(patience_s)
    pi = stationary(agents, lam, mu, theta, waiting)
    n_mu = agents * mu
    lost = Fraction(0)
    for m in range(waiting):
        p = Fraction(1)
        for i in range(1, m + 2):
            p *= (n_mu + (i - 1) * theta) / (n_mu + i * theta)
        lost += pi[agents + m] * (1 - p)
    return float(lost)
