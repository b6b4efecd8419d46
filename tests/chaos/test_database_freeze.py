"""A frozen PostgreSQL (SIGSTOP) against the reads' database bounds, not their deadline: a kept value past
its freshness is served ``STALE`` within 1 s, an uncached read answers 503 with ``Retry-After`` within
3 s, both for new connections (their connect cannot finish) and for a connection opened before the freeze
(its query would wait forever; the watchdog cuts it at the bound). The table's "deadline" column of these
rows is the bound the scenario holds the reads to.
"""

from __future__ import annotations

import signal

from such_market.cache.store import FALLBACK_DATABASE_SECONDS, UNCACHED_DATABASE_SECONDS
from tests.chaos.conftest import REPORTS, Answer, ScenarioReport, Stage
from tests.chaos.test_faults import CACHED, CACHED_KEYS, UNCACHED, _assert_bars, _baseline, _expire_kept, _seed

STALE_BOUND_SECONDS = 1.0
UNCACHED_BOUND_SECONDS = 3.0
_THREAD_OVERHEAD_SECONDS = 0.25  # the test's own threads on a shared 2-core machine, as in test_faults


def _bounded_report(stage: Stage, name: str, bound: float) -> ScenarioReport:
    report = ScenarioReport(name, bound)
    REPORTS.append(report)
    return report


def _frozen_reads(stage: Stage) -> tuple[list[Answer], list[Answer]]:
    """The cached and uncached targets read while PostgreSQL is frozen: concurrently on new threads
    (new connections), then again on this thread (its connection, opened by the baseline's fills before
    the freeze, is kept)."""
    _expire_kept(stage, CACHED_KEYS)
    stage.signal_postgres(signal.SIGSTOP)
    try:
        during = stage.call_all(CACHED + UNCACHED)
        watched = [stage.call("GET", target) for target in CACHED + UNCACHED]
    finally:
        stage.signal_postgres(signal.SIGCONT)
    cached = [*during[: len(CACHED)], *watched[: len(CACHED)]]
    uncached = [*during[len(CACHED) :], *watched[len(CACHED) :]]
    return cached, uncached


def test_postgres_frozen_stale_and_uncached_bounds(stage: Stage) -> None:
    assert FALLBACK_DATABASE_SECONDS < STALE_BOUND_SECONDS
    assert UNCACHED_DATABASE_SECONDS < UNCACHED_BOUND_SECONDS
    stale = _bounded_report(stage, "PostgreSQL frozen: kept value served STALE (bound 1 s)", STALE_BOUND_SECONDS)
    uncached = _bounded_report(stage, "PostgreSQL frozen: uncached read 503 (bound 3 s)", UNCACHED_BOUND_SECONDS)
    _seed(stage)
    _baseline(stage, stale)
    uncached.baseline = stale.baseline
    cached_answers, uncached_answers = _frozen_reads(stage)
    stale.add(cached_answers)
    uncached.add(uncached_answers)
    # Every kept value was served STALE, every uncached read was a 503 with Retry-After
    assert all((answer.status, answer.cache) == (200, "STALE") for answer in cached_answers), cached_answers
    assert all(answer.status == 503 and answer.retry_after for answer in uncached_answers), uncached_answers
    # And within the bounds (the bars: the longest against the bound, plus the test's thread overhead)
    assert stale.longest <= STALE_BOUND_SECONDS + _THREAD_OVERHEAD_SECONDS, stale.row()
    assert uncached.longest <= UNCACHED_BOUND_SECONDS + _THREAD_OVERHEAD_SECONDS, uncached.row()
    # After the thaw everything is served again, fresh
    after = [stage.call("GET", target) for target in CACHED + UNCACHED]
    stale.add(after[: len(CACHED)])
    uncached.add(after[len(CACHED) :])
    assert all(answer.status == 200 for answer in after), after
    for report in (stale, uncached):
        _assert_bars(report)
