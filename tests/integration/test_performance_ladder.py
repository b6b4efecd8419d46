"""The performance test's stress ladder finds a real breaking point: against a Valkey slowed on purpose from
a given step (a TCP proxy adding latency), the reported breaking point is that step; unslowed, none."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from local.services import Services
from such_market.cache.client import build_client
from such_market.config import CacheSettings
from such_market.perftest.runner import PerformanceRun, Profile, recommendations
from tests.fixtures.latency_proxy import LatencyProxy

LADDER = Profile(
    "test", basic_ops=20, levels=(1, 2), level_seconds=0.2, ladder=(1, 2, 4, 8), step_seconds=0.5, budget_seconds=60
)
SLOWED_STEP = 2


@pytest.fixture
def proxy(services: Services) -> Iterator[LatencyProxy]:
    target = urlparse(services.redis_url)
    made = LatencyProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    yield made
    made.close()


def _run(proxy: LatencyProxy, slowed_from: int | None) -> dict[str, object]:
    settings = CacheSettings(redis_url=f"redis://127.0.0.1:{proxy.port}")  # the functions' timeouts (100 ms)

    def before_step(index: int, clients: int) -> None:
        if slowed_from is not None and index >= slowed_from:
            proxy.delay_seconds = 0.06  # every answer 60 ms late: p99 above the 50 ms bound, under the timeout

    run = PerformanceRun(
        lambda: build_client(settings),
        key_prefix=f"such-market:perftest:test{slowed_from}",
        profile=LADDER,
        stop_at=time.monotonic() + LADDER.budget_seconds,
        before_step=before_step,
    )
    return run.run()


def test_the_breaking_point_is_the_step_where_the_server_was_slowed(proxy: LatencyProxy) -> None:
    # Given a Valkey behind a proxy that starts adding 60 ms to every answer at step 2 (4 clients)
    # When the ladder runs
    result = _run(proxy, SLOWED_STEP)
    # Then it stops at that step, breaking the p99 bound, and says so in the answer with both bounds
    stress = result["stress"]
    assert isinstance(stress, dict)
    point = stress["breakingPoint"]
    assert point is not None, stress
    assert (point["step"], point["clients"]) == (SLOWED_STEP, 4)
    assert "p99" in point["reasons"]
    assert point["p99Ms"] > 50
    assert (stress["p99BoundMs"], stress["maxErrorRate"]) == (50.0, 0.01)
    assert stress["stoppedBy"] == "breaking_point"
    assert [step["broken"] for step in stress["steps"]] == [False, False, True]
    assert stress["maxHealthyClients"] == 2
    # And the recommendations name it
    assert any("broke at 4 concurrent clients" in line for line in recommendations(result))
    # And it still slowed after the peak: recovery is reported as not reached
    assert result["recovery"]["recovered"] is False  # type: ignore[index]


def test_an_unslowed_server_has_no_breaking_point_within_the_ladder(proxy: LatencyProxy) -> None:
    result = _run(proxy, None)
    stress = result["stress"]
    assert isinstance(stress, dict)
    assert stress["breakingPoint"] is None, stress
    assert stress["stoppedBy"] == "end_of_ladder"
    assert [step["clients"] for step in stress["steps"]] == [1, 2, 4, 8]
    assert all(step["errors"] == 0 for step in stress["steps"])
    assert result["recovery"]["recovered"] is True  # type: ignore[index]
    assert result["health"]["connected"] is True  # type: ignore[index]
    assert result["cleanup"]["keysDeleted"] > 0  # type: ignore[index]
