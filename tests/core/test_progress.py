"""Lag measured at the broker: how long the oldest waiting record has waited, and
how long the committed offset has stood still while records wait."""

from __future__ import annotations

from services.core.progress import MAX_SAMPLES, Tracker


def test_a_record_waiting_is_as_old_as_the_first_poll_that_saw_it() -> None:
    t = Tracker()
    t.observe("events", 0, 10, 10, now=100.0)  # caught up
    t.observe("events", 0, 12, 10, now=102.0)  # two records arrive
    p = t.observe("events", 0, 15, 10, now=110.0)  # three more, nothing committed
    assert (p.backlog, p.behind_s, p.still_s) == (5, 8.0, 8.0)


def test_committing_the_oldest_records_makes_the_next_ones_the_oldest() -> None:
    t = Tracker()
    t.observe("events", 0, 10, 10, now=100.0)
    t.observe("events", 0, 12, 10, now=102.0)
    t.observe("events", 0, 15, 10, now=110.0)
    p = t.observe("events", 0, 15, 12, now=111.0)  # records 10-11 committed
    assert p.behind_s == 1.0, "records 12-14 were first seen at 110"
    assert p.still_s == 0.0, "the committed offset just moved"


def test_a_caught_up_partition_is_neither_behind_nor_stalled_however_long_it_idles() -> None:
    t = Tracker()
    t.observe("facts", 3, 7, 7, now=0.0)
    p = t.observe("facts", 3, 7, 7, now=3600.0)
    assert (p.backlog, p.behind_s, p.still_s) == (0, 0.0, 0.0)


def test_stall_counts_from_when_records_began_to_wait_not_from_the_last_commit() -> None:
    t = Tracker()
    t.observe("events", 1, 5, 5, now=0.0)  # last commit long ago, nothing waiting
    t.observe("events", 1, 6, 5, now=500.0)
    p = t.observe("events", 1, 6, 5, now=530.0)
    assert p.still_s == 30.0


def test_a_log_that_shrank_starts_over_instead_of_reporting_negative_backlog() -> None:
    t = Tracker()
    t.observe("events", 0, 900, 850, now=0.0)
    p = t.observe("events", 0, 3, 0, now=10.0)  # the broker lost the topic
    assert (p.backlog, p.behind_s) == (3, 0.0)


def test_samples_stay_bounded_while_a_backlog_grows_for_a_day() -> None:
    t = Tracker()
    for i in range(43_200):
        p = t.observe("events", 0, 100 + i, 100, now=2.0 * i)
    assert p.behind_s == 2.0 * 43_199 - 2.0, "the first record waiting came at the second poll"
    assert len(t._parts[("events", 0)].samples) <= MAX_SAMPLES
