"""Log-bucketed latency histograms: DDSketch's mapping, merged by adding counts.

A latency ``x`` (microseconds, at least 1) falls in bucket ``i = ceil(log(x) / log(gamma))`` with
``gamma = (1 + alpha) / (1 - alpha)``; the bucket's representative value ``2 gamma**i / (gamma + 1)`` is
within ``alpha`` (relative) of every value in the bucket. A percentile is read as the representative
value of the bucket holding the item of rank ``floor(q (n - 1))`` (the rank an exact computation over the
sorted latencies uses), so it is within ``alpha`` of the exact percentile. Histograms of two containers,
or of two minutes, merge by adding bucket counts: the merge is exact.

With ``alpha = 0.01`` one decade of latency spans 116 buckets; a real endpoint uses a few dozen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

RELATIVE_ACCURACY: Final = 0.01
GAMMA: Final = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA: Final = math.log(GAMMA)
MIN_MICROSECONDS: Final = 1.0


def bucket_of(microseconds: float) -> int:
    """The bucket of a latency in microseconds (values under 1 µs count as 1 µs)."""
    return math.ceil(math.log(max(microseconds, MIN_MICROSECONDS)) / _LOG_GAMMA)


def value_of(bucket: int) -> float:
    """The representative latency (µs) of ``bucket``: within ``RELATIVE_ACCURACY`` of all it holds."""
    return 2 * GAMMA**bucket / (GAMMA + 1)


def merge(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """The sum of several histograms (exact)."""
    merged: dict[int, int] = {}
    for histogram in histograms:
        for bucket, count in histogram.items():
            merged[bucket] = merged.get(bucket, 0) + count
    return merged


def quantiles(histogram: Mapping[int, int], qs: Iterable[float]) -> list[float | None]:
    """The ``qs`` quantiles (µs) of ``histogram``, each ``None`` when it is empty."""
    ordered = sorted((bucket, count) for bucket, count in histogram.items() if count > 0)
    total = sum(count for _, count in ordered)
    answers: list[float | None] = []
    for q in qs:
        if total == 0:
            answers.append(None)
            continue
        rank = math.floor(min(max(q, 0.0), 1.0) * (total - 1))
        seen = 0
        for bucket, count in ordered:
            seen += count
            if seen > rank:
                answers.append(value_of(bucket))
                break
    return answers
