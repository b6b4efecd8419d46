"""Issue 15, item 9 on Lambda: every invocation's figures are written after its response and before Lambda
could freeze (or recycle) the container, through an internal extension (``such_market.post_invoke``)
registered with a local stand-in of the Extensions API."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from local.alchemy_stub import ERC721_CONTRACT
from such_market import post_invoke
from such_market.analytics import recorder
from such_market.analytics.report import Pipeline, metrics_report
from such_market.cache.keys import CacheKeys
from such_market.container import close_all
from tests.fixtures.extensions_api import ExtensionsApi
from tests.functions.conftest import Reply

QUIET = Pipeline(outbox_backlog=0, oldest_unpublished_age_seconds=0.0, dlq_depth=0)


def requests_in_valkey(cache: redis.Redis) -> int:
    """What the metrics endpoint would count, read from the minute hashes themselves."""
    report = metrics_report(client=cache, keys=CacheKeys("such-market"), window="15m", pipeline=QUIET)
    return int(report["analytics"]["overview"]["totalRequests"])


@pytest.fixture
def extensions_api(cache: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[ExtensionsApi]:
    # A flusher that would only write an hour later: whatever reaches Valkey here, the extension wrote.
    monkeypatch.setattr(recorder, "FLUSH_INTERVAL_SECONDS", 3600.0)
    monkeypatch.setattr(post_invoke, "_enabled", None)
    api = ExtensionsApi(on_next=lambda: requests_in_valkey(cache))
    yield api
    api.close()


def test_each_invocation_is_written_before_the_container_may_freeze(
    api: Callable[..., Reply], extensions_api: ExtensionsApi, cache: redis.Redis
) -> None:
    # Given a container that registered the extension at init
    close_all()
    extension = post_invoke.enable(extensions_api.address)
    assert extension is not None
    assert extensions_api.registered == [{"name": post_invoke.EXTENSION_NAME, "events": ["INVOKE"]}]
    assert extensions_api.wait_for_next_calls(1)  # init done: Lambda may now send the first invocation
    # When three invocations are served, one at a time as Lambda sends them
    target = f"/api/collection/{ERC721_CONTRACT}"
    caches = []
    for served in range(1, 4):
        extensions_api.invoke()
        caches.append(api("GET", target).cache)
        assert extensions_api.wait_for_next_calls(served + 1)
    # Then each time the extension said it was done (when Lambda would freeze), Valkey held every
    # invocation so far, though the container's own flusher would not have written for an hour
    assert caches == ["MISS", "HIT", "HIT"]
    assert extensions_api.snapshots == [0, 1, 2, 3]


def test_each_invocation_emf_line_is_printed_before_the_container_may_freeze(
    api: Callable[..., Reply], cache: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a container on Lambda that registered the extension at init, its stdout recorded as written
    printed: list[str] = []
    monkeypatch.setattr(recorder, "FLUSH_INTERVAL_SECONDS", 3600.0)
    monkeypatch.setattr(post_invoke, "_enabled", None)
    monkeypatch.setattr(recorder, "_print", printed.append)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "such-market-CollectionMetadataFunction")
    documents = lambda: sum(chunk.count('"_aws"') for chunk in printed)  # noqa: E731
    stand_in = ExtensionsApi(on_next=documents)
    try:
        close_all()
        assert post_invoke.enable(stand_in.address) is not None
        assert stand_in.wait_for_next_calls(1)
        # When two invocations are served
        for served in range(1, 3):
            stand_in.invoke()
            api("GET", f"/api/collection/{ERC721_CONTRACT}")
            assert stand_in.wait_for_next_calls(served + 1)
    finally:
        stand_in.close()
    # Then at each point Lambda could freeze the container, that invocation's EMF document was printed
    assert stand_in.snapshots == [0, 1, 2]


def test_without_the_extensions_api_nothing_registers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(post_invoke, "_enabled", None)
    monkeypatch.delenv("AWS_LAMBDA_RUNTIME_API", raising=False)
    assert post_invoke.enable() is None
    assert post_invoke.enabled() is None


def test_a_refused_registration_leaves_the_function_working(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an Extensions API that refuses every registration (a port where nothing listens)
    from local.services import free_port

    monkeypatch.setattr(post_invoke, "_enabled", None)
    # When the function registers at init, then it goes on without the extension
    assert post_invoke.enable(f"127.0.0.1:{free_port()}") is None
    assert post_invoke.enabled() is None
