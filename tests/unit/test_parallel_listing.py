"""Parallel id-range listing of getNFTsForContract (issue 18): the gate, the density test, the ranges.

The client runs over ``httpx.MockTransport`` with a simulated collection (``startToken`` → the next
``limit`` existing ids, ``pageKey`` the next id in hex, as Alchemy pages) and the fake clock of
``test_alchemy_client``; parallelism is proven with a barrier that only opens when several calls are in
flight at once, never with timings.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import httpx
import pytest

from such_market.collections.ingestion import dense_id_range
from such_market.upstream.alchemy import Nft, NftPage, page_key_token_id
from such_market.upstream.gate import CallGate
from tests.unit.test_alchemy_client import CONTRACT, FakeTime, Recorder, error, make_client, nft_payload, ok


def collection(ids: Iterable[int]) -> Recorder:
    """A recorder answering getNFTsForContract over the token ids ``ids`` as Alchemy pages them."""
    existing = sorted(ids)

    def handler(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params.get("startToken") or "0", 0)
        limit = int(request.url.params["limit"])
        listed = [token for token in existing if token >= start][: limit + 1]
        page, following = listed[:limit], listed[limit:]
        return ok(
            {"nfts": [nft_payload(str(token)) for token in page], "pageKey": hex(following[0]) if following else None}
        )

    return Recorder(handler)


def listed(pages: list[NftPage]) -> list[int]:
    return [int(nft.token_id) for page in pages for nft in page.nfts]


def test_dense_ids_are_listed_in_ranges_in_order_with_one_call_per_page() -> None:
    # Given a collection of ids 0..999, whose first page (0..99) was read already
    recorder = collection(range(1000))
    # When the rest is listed in ranges up to the stated supply
    pages = list(make_client(recorder).iter_nfts_for_id_range(contract=CONTRACT, start=100, end=1000, limit=100))
    # Then every id comes once, in order, one request per page, each sent with its range's startToken
    assert listed(pages) == list(range(100, 1000))
    assert len(recorder.requests) == len(pages) == 9
    assert sorted(int(r.url.params["startToken"], 16) for r in recorder.requests) == list(range(100, 1000, 100))
    # And each page says where the listing goes on; the last one that it is complete
    assert [page_key_token_id(page.page_key) for page in pages[:-1]] == list(range(200, 1000, 100))
    assert pages[-1].page_key is None


def test_ranges_are_fetched_concurrently() -> None:
    # Given an upstream whose first four answers wait until four requests are in flight at once
    barrier = threading.Barrier(4, timeout=10)
    inner = collection(range(1000))
    calls = iter(range(10**6))

    def handler(request: httpx.Request) -> httpx.Response:
        if next(calls) < 4:
            barrier.wait()  # raises BrokenBarrierError if the client sends them one at a time
        return inner(request)

    # When the ranges are listed with four at a time, the listing completes
    pages = list(
        make_client(Recorder(handler)).iter_nfts_for_id_range(
            contract=CONTRACT, start=100, end=1000, limit=100, concurrency=4
        )
    )
    assert listed(pages) == list(range(100, 1000))


def test_gaps_in_the_ids_are_listed_once_each() -> None:
    # Given ids with gaps (every 7th burned), so Alchemy's pages run past each range's end
    ids = [token for token in range(1000) if token < 100 or token % 7]
    recorder = collection(ids)
    pages = list(make_client(recorder).iter_nfts_for_id_range(contract=CONTRACT, start=100, end=1000, limit=100))
    # Then each id comes exactly once, in order, and still one call per range
    assert listed(pages) == [token for token in ids if token >= 100]
    assert len(recorder.requests) == 9


def test_ids_beyond_an_undercounted_supply_are_followed_by_page_key() -> None:
    # Given 1,500 tokens and a stated supply of 1,000 (burns counted out)
    recorder = collection(range(1500))
    pages = list(make_client(recorder).iter_nfts_for_id_range(contract=CONTRACT, start=100, end=1000, limit=100))
    # Then the last range follows the page keys to the real end, one call per page
    assert listed(pages) == list(range(100, 1500))
    assert len(recorder.requests) == len(pages) == 14
    assert pages[-1].page_key is None


def test_a_429_halves_the_concurrency_and_pauses_the_other_calls() -> None:
    # Given an upstream that answers the third request with 429 Retry-After: 2
    fake = FakeTime()
    inner = collection(range(1000))
    calls = iter(range(10**6))
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            number = next(calls)
        if number == 2:
            return error(429, {"error": {"message": "slow down"}}, {"Retry-After": "2"})
        return inner(request)

    client = make_client(Recorder(handler), fake)
    gate = CallGate(8, sleep=fake.sleep, clock=fake.clock)
    pages = list(client.iter_nfts_for_id_range(contract=CONTRACT, start=100, end=1000, limit=100, gate=gate))
    # Then the listing completes with one retry, the call that met the 429 waited Retry-After
    assert listed(pages) == list(range(100, 1000))
    assert next(calls) == 10  # nine ranges and one retry
    assert 2.0 in fake.sleeps
    assert gate.rate_limits == 1


def test_the_gate_halves_on_429_and_grows_back_one_by_one() -> None:
    fake = FakeTime()
    gate = CallGate(8, sleep=fake.sleep, clock=fake.clock)
    gate.rate_limited(1.0)
    assert gate.limit == 4
    gate.rate_limited(1.0)
    gate.rate_limited(1.0)
    gate.rate_limited(1.0)
    assert gate.limit == 1  # never below one
    for _ in range(1 + 2):
        gate.acquire()
        gate.release(succeeded=True)
    assert gate.limit == 3  # +1 after 1 success at limit 1, +1 after 2 at limit 2
    gate.acquire()
    gate.release(succeeded=False)
    assert gate.limit == 3


def test_the_pause_of_a_429_holds_the_others_but_not_the_caller_that_waits_it_itself() -> None:
    fake = FakeTime()
    gate = CallGate(4, sleep=fake.sleep, clock=fake.clock)
    gate.rate_limited(3.0)
    assert gate.pause_remaining() == 3.0
    # The caller that met the 429 sleeps its own delay (the requester does): the gate adds nothing
    gate.acquire()
    gate.release(succeeded=True)
    assert fake.sleeps == []
    # Another thread entering the gate waits out the pause
    other = threading.Thread(target=lambda: (gate.acquire(), gate.release(succeeded=True)))
    other.start()
    other.join(timeout=10)
    assert fake.sleeps == [3.0]
    assert gate.pause_remaining() == 0.0


def page_of(ids: Iterable[int], key: str | None) -> NftPage:
    return NftPage(nfts=tuple(Nft(contract_address=CONTRACT, token_id=str(token)) for token in ids), page_key=key)


@pytest.mark.parametrize(
    ("ids", "key", "supply", "lowest", "expected"),
    [
        (range(100), "0x64", 10_000, None, (100, 10_000)),  # dense from 0
        (range(1, 101), "101", 10_000, None, (101, 10_001)),  # dense from 1, decimal key
        (range(5000, 5100), "0x13ec", 10_000, 0, (5100, 10_000)),  # a resumed run: the lowest id listed before
        (range(100), "0x64", None, None, None),  # no stated supply
        (range(100), "0x64", 150, None, None),  # one page left: nothing to parallelize
        (range(50), None, 10_000, None, None),  # a short page
        (range(0, 200, 2), "0xc8", 10_000, None, None),  # not consecutive
        (range(100), "0x65", 10_000, None, None),  # the key skips an id
        (range(100), "opaque-key", 10_000, None, None),  # an opaque key
    ],
)
def test_density_is_judged_from_the_first_page_and_the_supply(
    ids: range, key: str | None, supply: int | None, lowest: int | None, expected: tuple[int, int] | None
) -> None:
    assert dense_id_range(page_of(ids, key), total_supply=supply, lowest_listed=lowest) == expected
