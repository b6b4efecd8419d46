"""First ingestion of a never-seen collection, against the Alchemy stub with upstream latency (issue 18).

``ingest_collection`` end to end on the bench database: metadata, every token page, the holder listing
with balances, and the finishing transaction (pruning, positions, facets, ownership with its summaries,
the outbox). The stub answers over HTTP on loopback after ``LATENCY_MS`` of latency per request, from its
own process (Alchemy is a remote service: building its answers is not our process's work, and in ours it
would compete for the GIL with the writer); the collection's rows are deleted before each run, so every
run is a first ingestion. Events go to an
EventBridge stand-in that accepts everything (publishing is not what is measured).

- 10,000 tokens (ids 0..9,999, ``totalSupply`` 10000) at 100 ms per call: the parallel id ranges, bar
  ≤ 3 s; beside it the ``pageKey`` chain (the same stub with the supply left out of the contract's
  metadata, so the dense-id test fails and the run follows the page keys, as every run did before):
  its floor is 100 sequential pages x 100 ms = 10 s.
- the listing alone (the client's pages, nothing written) both ways: what the upstream part costs, apart
  from the database writes that overlap it.
- 100,000 tokens at 100 ms with every 20th request answered 429 ``Retry-After: 1`` (5 %): informational,
  with the calls, the 429s and the pages.

The machine's load average at the start of each run is noted: the writes and the finishing transaction
run on the database server, which shares the CPUs with everything else on the machine. One untimed
ingestion comes first (imports, connection pools, the stub's generated data).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

import orjson

from bench.common import BenchEnv, Measure

GROUP = "ingestion"
LATENCY_MS = 100
BAR_SECONDS = 3.0
RATE_LIMIT_EVERY = 20  # 5 % of requests


class _AcceptingEvents:
    """An EventBridge client that accepts every entry."""

    def put_events(self, Entries: list[Any]) -> dict[str, Any]:  # noqa: N803 - boto3's spelling
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(index)} for index, _ in enumerate(Entries)]}


def _without_supply(stub: Any) -> None:
    """Make the stub's getContractMetadata answer without ``totalSupply`` (a contract that does not state it)."""
    original: Callable[[str], tuple[int, bytes, dict[str, str]]] = stub.handle

    def handle(target: str) -> tuple[int, bytes, dict[str, str]]:
        status, body, headers = original(target)
        if status == 200 and "/getContractMetadata?" in target:
            payload = orjson.loads(body)
            payload["totalSupply"] = None
            body = orjson.dumps(payload)
        return status, body, headers

    stub.handle = handle


def _serve_stub(conn: Connection, latency_ms: float) -> None:
    """The stub's process: serve, and answer the bench's commands until told to stop."""
    from local.alchemy_stub import AlchemyStub

    with AlchemyStub(latency_ms=latency_ms) as stub:
        original = stub.handle
        conn.send((stub.api_key, stub.base_url))
        while (command := conn.recv())[0] != "stop":
            match command:
                case ("count", method):
                    conn.send(stub.request_count(method))
                case ("peak", method):
                    conn.send(stub.peak_in_flight(method))
                case ("reset",):
                    stub.reset_counters()
                    conn.send(None)
                case ("rate_limit_every", every):
                    stub.rate_limit_every = every
                    conn.send(None)
                case ("supply", True):
                    stub.handle = original  # type: ignore[method-assign]
                    conn.send(None)
                case ("supply", False):
                    _without_supply(stub)
                    conn.send(None)


class _RemoteStub:
    """The Alchemy stub in a process of its own, with the counters and switches the bench uses."""

    def __init__(self, latency_ms: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve_stub, args=(child, latency_ms), daemon=True)
        self._process.start()
        self.api_key, self.base_url = self._conn.recv()

    def _ask(self, *command: Any) -> Any:
        self._conn.send(command)
        return self._conn.recv()

    def request_count(self, method: str | None = None) -> int:
        return int(self._ask("count", method))

    def peak_in_flight(self, method: str) -> int:
        return int(self._ask("peak", method))

    def reset_counters(self) -> None:
        self._ask("reset")

    def set_rate_limit_every(self, every: int) -> None:
        self._ask("rate_limit_every", every)

    @contextmanager
    def without_supply(self) -> Iterator[None]:
        self._ask("supply", False)
        try:
            yield
        finally:
            self._ask("supply", True)

    def close(self) -> None:
        self._conn.send(("stop",))
        self._process.join(timeout=10)


def _ingest_once(env: BenchEnv, stub: Any, address: str) -> tuple[float, Any]:
    from such_market.collections.ingestion import ingest_collection
    from such_market.config import EventSettings
    from such_market.events.publisher import EventPublisher
    from such_market.upstream.alchemy import AlchemyClient

    publisher = EventPublisher(
        EventSettings(event_bus_name="such-market", eventbridge_endpoint_url=None), client=_AcceptingEvents()
    )
    with env.connect() as conn:
        conn.execute("DELETE FROM collections WHERE contract_address = %s", (address,))
        with AlchemyClient(api_key=stub.api_key, base_url=stub.base_url) as alchemy:
            started = time.perf_counter()
            report = ingest_collection(conn=conn, alchemy=alchemy, publisher=publisher, address=address, reason="bench")
            seconds = time.perf_counter() - started
    if report.state != "complete":
        raise RuntimeError(f"the bench ingestion did not complete: {report}")
    return seconds, report


def _measure(
    name: str, label: str, seconds: float, report: Any, stub: Any, *, bar: bool = False, note: str = ""
) -> Measure:
    calls = stub.request_count("getNFTsForContract")
    return Measure(
        group=GROUP,
        name=name,
        label=label,
        value=round(seconds * 1000, 1),
        unit="ms",
        bar=f"≤ {BAR_SECONDS:g} s" if bar else None,
        passed=seconds <= BAR_SECONDS if bar else None,
        note=(
            f"{report.nfts} tokens, {report.pages} token pages, {calls} getNFTsForContract calls, "
            f"peak {stub.peak_in_flight('getNFTsForContract')} in flight, {stub.request_count()} calls in all, "
            f"load average {os.getloadavg()[0]:.1f}" + (f"; {note}" if note else "")
        ),
        extra={"tokens": report.nfts, "pages": report.pages, "token_calls": calls, "calls": stub.request_count()},
    )


def _list_only(stub: Any, address: str, *, parallel: bool) -> Measure:
    """The token listing alone, through the client: id ranges from the first page on, or the chain."""
    from such_market.upstream.alchemy import AlchemyClient

    stub.reset_counters()
    load = os.getloadavg()[0]
    with AlchemyClient(api_key=stub.api_key, base_url=stub.base_url) as alchemy:
        started = time.perf_counter()
        first = alchemy.get_nfts_for_contract_page(contract=address)
        tokens = len(first.nfts)
        pages = (
            alchemy.iter_nfts_for_id_range(contract=address, start=len(first.nfts), end=10_000)
            if parallel
            else alchemy.iter_nfts_for_contract(contract=address, start_token=first.page_key)
        )
        tokens += sum(len(page.nfts) for page in pages)
        seconds = time.perf_counter() - started
    how = "parallel id ranges" if parallel else "pageKey chain"
    return Measure(
        group=GROUP,
        name=f"listing_10k_{'parallel' if parallel else 'chain'}",
        label=f"listing alone, 10,000 tokens at 100 ms: {how}",
        value=round(seconds * 1000, 1),
        unit="ms",
        note=f"{tokens} tokens, {stub.request_count()} calls, load average {load:.1f}",
    )


def run(env: BenchEnv, *, quick: bool) -> list[Measure]:
    from local.alchemy_stub import ERC721_CONTRACT, LARGE_CONTRACT

    measures: list[Measure] = []
    stub = _RemoteStub(LATENCY_MS)
    try:
        _ingest_once(env, stub, ERC721_CONTRACT)  # warm-up: imports, pools, the stub's generated data
        stub.reset_counters()
        seconds, report = _ingest_once(env, stub, ERC721_CONTRACT)
        measures.append(
            _measure("parallel_10k", "10,000 tokens at 100 ms: parallel id ranges", seconds, report, stub, bar=True)
        )
        if quick:
            return measures
        stub.reset_counters()
        with stub.without_supply():
            seconds, report = _ingest_once(env, stub, ERC721_CONTRACT)
        chain = _measure("chain_10k", "10,000 tokens at 100 ms: pageKey chain (before)", seconds, report, stub)
        chain.note += "; floor 100 pages x 100 ms = 10 s"
        measures.append(chain)
        measures[0].ratio = measures[0].value / chain.value
        measures[0].ratio_of = chain.name
        measures.append(_list_only(stub, ERC721_CONTRACT, parallel=True))
        measures.append(_list_only(stub, ERC721_CONTRACT, parallel=False))

        stub.reset_counters()
        stub.set_rate_limit_every(RATE_LIMIT_EVERY)
        seconds, report = _ingest_once(env, stub, LARGE_CONTRACT)
        rejected = stub.request_count() // RATE_LIMIT_EVERY
        measures.append(
            _measure(
                "parallel_100k_429",
                "100,000 tokens at 100 ms, 5 % 429 (Retry-After: 1)",
                seconds,
                report,
                stub,
                note=f"{rejected} answered 429",
            )
        )
    finally:
        stub.close()
    return measures
