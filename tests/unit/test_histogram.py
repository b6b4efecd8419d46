"""The latency histogram: every percentile within its stated relative accuracy; merges are exact."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from such_market.analytics.histogram import RELATIVE_ACCURACY, bucket_of, merge, quantiles, value_of

QS = (0.5, 0.9, 0.95, 0.99, 0.999)


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def histogram_of(values: list[float]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for value in values:
        counts[bucket_of(value)] = counts.get(bucket_of(value), 0) + 1
    return counts


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1.0, max_value=6e7, allow_nan=False), min_size=1, max_size=400))
def test_every_quantile_is_within_the_relative_accuracy(values: list[float]) -> None:
    for q, estimate in zip(QS, quantiles(histogram_of(values), QS), strict=True):
        truth = exact(values, q)
        assert estimate is not None
        assert abs(estimate - truth) <= RELATIVE_ACCURACY * truth * (1 + 1e-9)


def test_a_bucket_represents_its_values_within_the_accuracy() -> None:
    for value in (1.0, 1.5, 37.0, 120.5, 999.9, 12_345.0, 5e6):
        assert abs(value_of(bucket_of(value)) - value) <= RELATIVE_ACCURACY * value * (1 + 1e-9)


def test_merging_two_containers_equals_one_histogram_of_both() -> None:
    rng = random.Random(7)
    first = [rng.lognormvariate(5, 1) for _ in range(5000)]
    second = [rng.lognormvariate(7, 0.5) for _ in range(3000)]
    assert merge([histogram_of(first), histogram_of(second)]) == histogram_of(first + second)


def test_an_empty_histogram_has_no_quantiles() -> None:
    assert quantiles({}, (0.5, 0.99)) == [None, None]
    assert quantiles({bucket_of(100): 1}, (0.0, 1.0)) == [value_of(bucket_of(100))] * 2
