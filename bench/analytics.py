"""Group ``analytics``: the percentiles the metrics endpoint reports against the exact ones.

Latencies are taken for real: the metadata handler's HIT, timed call by call (the same latencies the
analytics record), plus a heavy-tailed synthetic mix (lognormal with a slow tail, as misses through
PostgreSQL and the upstreams make it). Both go through a ``Recorder`` of two "containers", are flushed to
Valkey and read back by ``metrics_report``; its p50/p95/p99 are compared with the exact percentiles of
the same latencies (rank ``floor(q (n - 1))`` of the sorted list). Bar: every reported percentile within
2 % relative error (the histogram promises 1 %). The cost of recording on a HIT is in group ``hit``.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from bench.common import (
    CACHE_PREFIX,
    BenchEnv,
    FakeContext,
    Measure,
    forget_containers,
    http_event,
    seed_small_collection,
)

GROUP = "analytics"
ERROR_BAR = 0.02


def _exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def _handler_latencies(env: BenchEnv, n: int) -> list[float]:
    forget_containers()
    import collection_metadata

    address = seed_small_collection(env)
    event = http_event("/api/collection/{contractAddress}", f"/api/collection/{address}", {"contractAddress": address})
    context: Any = FakeContext()
    collection_metadata.lambda_handler(event, context)  # the MISS that fills it
    seconds: list[float] = []
    clock = time.perf_counter
    for _ in range(n):
        started = clock()
        collection_metadata.lambda_handler(event, context)
        seconds.append(clock() - started)
    forget_containers()
    return seconds


def run(env: BenchEnv, *, quick: bool) -> list[Measure]:
    from such_market.analytics.recorder import Recorder
    from such_market.analytics.report import Pipeline, metrics_report, reset
    from such_market.cache.keys import CacheKeys

    env.flush_cache()
    rng = random.Random(11)
    samples = {
        "handler HIT latencies": _handler_latencies(env, 2000 if quick else 20_000),
        "heavy-tailed mix": [
            rng.lognormvariate(-7.5, 0.5) if rng.random() < 0.95 else rng.lognormvariate(-3.0, 1.0)
            for _ in range(5000 if quick else 50_000)
        ],
    }
    keys = CacheKeys(CACHE_PREFIX)
    client = env.redis()
    measures: list[Measure] = []
    try:
        for name, latencies in samples.items():
            reset(client=client, keys=keys)
            now = time.time()

            def clock(now: float = now) -> float:
                return now

            containers = [Recorder(client=lambda: client, keys=keys, clock=clock) for _ in range(2)]
            for index, seconds in enumerate(latencies):
                containers[index % 2].observe("metadata", "HIT", seconds)
            for container in containers:
                if not container.flush():
                    raise RuntimeError("the analytics flush failed")
            quiet = Pipeline(outbox_backlog=0, oldest_unpublished_age_seconds=0.0, dlq_depth=0)
            overview = metrics_report(client=client, keys=keys, window="15m", pipeline=quiet, now=now)["analytics"][
                "overview"
            ]
            if overview["totalRequests"] != len(latencies):
                raise RuntimeError(f"{name}: {overview['totalRequests']} recorded of {len(latencies)}")
            errors = {}
            for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                truth = _exact(latencies, q) * 1000
                errors[label] = abs(overview[label] - truth) / truth
            worst = max(errors.values())
            measures.append(
                Measure(
                    GROUP,
                    f"analytics.percentile_error.{name.split()[0]}",
                    f"reported vs exact percentiles, {name} ({len(latencies):,} over 2 containers)",
                    round(worst * 100, 3),
                    "%",
                    bar=f"<= {ERROR_BAR * 100:.0f} % relative",
                    passed=worst <= ERROR_BAR,
                    note=", ".join(f"{label} {error * 100:.2f} %" for label, error in errors.items()),
                    extra={"errors": errors, "overview": overview},
                )
            )
        reset(client=client, keys=keys)
    finally:
        client.close()
    return measures
