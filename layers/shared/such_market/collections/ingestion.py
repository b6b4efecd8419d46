"""The ingestion job of one collection (SPEC §6 ``collection.ingest_requested``): Alchemy → PostgreSQL.

``ingest_collection`` reads the contract's metadata, every token (getNFTsForContract) and every holder
with its balances (getOwnersForContract ``withTokenBalances``), and stores them with the set-based
writers of ``such_market.collections.writes``:

1. the collection row is marked ``running`` (created first from its metadata when it is new); an
   address without an NFT contract ends ``failed`` at once, without an exception, so the event is not
   retried for nothing;
2. token pages stream from a fetch thread through a bounded queue into ``upsert_nfts`` batches on the
   calling thread, each batch given its token-order ranks in its own transaction (appended as its rows
   are inserted), so the fetch of the next pages overlaps the write of the current batch and memory
   holds at most ``prefetch_pages`` pages plus one batch. Alchemy's ``pageKey`` chain is sequential
   (each key comes from the page before), so a 10,000-token collection at 100 ms per call takes at least
   10 s that way. When the first page shows dense integer ids (a full page of consecutive ids whose
   page key is the next id) and the contract states its supply, the rest is read in parallel id ranges
   instead (``AlchemyClient.iter_nfts_for_id_range``: one ``startToken`` call per 100 ids, at most
   ``range_concurrency`` in flight through a gate that halves on 429 and pauses for ``Retry-After``,
   pages in id order, the last range following the page keys past the stated supply); otherwise the
   chain is followed. Either way it is one call per page. The holder listing, which needs no token
   data, runs at the same time on a second thread, with the client's 429-aware bounded retries;
3. once both listings are complete, one transaction finishes the run: tokens Alchemy no longer lists
   are deleted, the ranks of what a deletion or an out-of-order token moved assigned (usually none
   left), rarity ranked, trait facets rebuilt, ``nft_ownership`` replaced by the holder listing
   in one set-based call (the summary triggers run once over the whole set) with one
   ``ownership.changed`` per batch of wallets whose holdings changed (``collections.owners``, shared with
   the admin sync), the state set ``complete`` with its counters, and ``collection.refreshed`` written to
   the outbox. Token rows appear
   batch by batch during the run, but ownership, facets, ranks and the state switch in that one commit,
   and a crash before it marks nothing complete.

Failures end the run with state ``failed`` and a public error text (the provider and HTTP status of an
upstream failure, whose own text goes only to the logs, or a generic one: never the key, never internals):

- a transient failure (Alchemy unavailable: 5xx, timeouts, 429 through every in-call retry, or a
  truncated answer; the time budget running out; an unexpected error) schedules a retry on the
  collection row: ``ingestion_retry_at`` = now + ``retry_delay(attempt)`` (1 min doubling to 1 h, ±10 %),
  up to ``MAX_ATTEMPTS`` runs in a row. ``collections.retries.requeue_due_ingestions`` (run every minute by
  the outbox relay) queues each due collection again with ``collection.ingest_requested`` (reason ``retry``) in
  the transaction that sets it ``queued``. Why a sweep over the database rather than an event that
  re-queues itself: the schedule is durable in the same row as the state it retries (a crash, a lost
  event, a dead letter or an outage of the bus cannot lose it), it needs no delayed delivery from the
  bus, an operator sees it (``ingestion_retry_at``), and any new run (a refresh, Lambda's own retry of
  an invocation) cancels it by starting. An upstream failure with a retry scheduled returns normally
  (the sweep is its only retry); one with no attempt left is re-raised, so Lambda's retries and then
  the events dead-letter queue make it visible; an unexpected error is re-raised too (after scheduling
  its retry);
- a run resumes where the failed one stopped: after each committed token batch the run records the
  next ``startToken`` (``ingestion_resume_key``) and the highest token id written
  (``ingestion_listed_through``); the next run lists from there and counts the stored tokens at or below
  that id as listed. (Tokens of that resumed part that the upstream stopped listing meanwhile are pruned
  by the next full run, a refresh.) The holder listing, needed whole for the set-based replacement, is
  read again;
- a listing that stops before its end (the client's page cap, a repeated page key), a holder listing
  without balances, an address without a contract or an upstream 4xx (credentials, bad request) are
  not transient: ``failed`` without a retry, returned normally (an upstream 4xx is re-raised), and
  neither tokens nor ownership are removed on their account. An Alchemy call in flight at the deadline
  may overrun the time budget by that call's own retry budget; the margin below the Lambda timeout
  covers that, so a run never stays ``running`` because Lambda killed it.

When a failed run has already written token rows, ``collection.updated`` goes out with the failed state
so cached pages of the collection are dropped. Until a run completes (``ingestion_completed_at``), the
read path labels the collection's answers ``indexing`` and caches them only briefly.

Re-running converges: token rows are upserted (unchanged rows untouched) and those no longer listed
deleted, traits and ranks recomputed, ownership replaced, so a run leaves the same rows whatever the
collection held before. A run that finds
another run of the same collection in progress (a session advisory lock) returns ``skipped``.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic.alias_generators import to_camel

from such_market.backoff import exponential_ceiling
from such_market.collections.from_alchemy import collection_metadata, nft_record
from such_market.collections.owners import replace_owners_announcing
from such_market.collections.queries import get_collection, get_token_ids_through
from such_market.collections.retries import RETRY_REASON
from such_market.collections.writes import (
    NftRecord,
    assign_positions,
    delete_unlisted_nfts,
    ingestion_lock,
    rank_rarity,
    rebuild_traits,
    record_ingestion_failure,
    record_ingestion_progress,
    set_ingestion_state,
    upsert_collection,
    upsert_nfts,
)
from such_market.db.connection import set_local_statement_timeout
from such_market.errors import SuchMarketError
from such_market.events.models import CollectionRefreshed, CollectionUpdated, Event
from such_market.events.outbox import outbox_transaction
from such_market.failures import public_upstream_failure
from such_market.observability import logger
from such_market.upstream.alchemy import (
    DEFAULT_RANGE_CONCURRENCY,
    ERC721,
    MAX_PAGE_SIZE,
    NftPage,
    page_key_token_id,
)
from such_market.upstream.errors import UpstreamError, UpstreamProtocolError, UpstreamUnavailable
from such_market.validation import normalize_address

if TYPE_CHECKING:
    import uuid

    import psycopg

    from such_market.collections.queries import CollectionRow
    from such_market.events.publisher import EventPublisher
    from such_market.upstream.alchemy import AlchemyClient

    Connection = psycopg.Connection[tuple[Any, ...]]

LAMBDA_TIMEOUT_SECONDS: Final = 900.0
TIME_BUDGET_MARGIN_SECONDS: Final = 60.0
"""Kept free below the Lambda timeout: one in-flight Alchemy call's retry budget plus the final transaction."""

DEFAULT_TIME_BUDGET_SECONDS: Final = LAMBDA_TIMEOUT_SECONDS - TIME_BUDGET_MARGIN_SECONDS
DEFAULT_BATCH_TOKENS: Final = 1000
"""Tokens per ``upsert_nfts`` call: ten Alchemy pages, one COPY and three statements."""

DEFAULT_PREFETCH_PAGES: Final = 20
"""How many token pages the fetch thread may read ahead of the writer (memory bound: 2,000 tokens)."""

MAX_CONFLICT_LOOKUPS: Final = 50
"""ERC-721 tokens listed with two holders (a transfer between two owner pages) re-read one by one."""

FINISH_STATEMENT_TIMEOUT_MS: Final = 120_000
"""Statement timeout of the finishing transaction: whole-collection statements over up to 100k+ rows."""

MAX_REASON_LENGTH: Final = 200
"""The events' ``reason`` label limit."""

NOT_A_CONTRACT_ERROR: Final = "the address holds no NFT contract"
TIME_BUDGET_ERROR: Final = "time budget exceeded"
INTERNAL_ERROR: Final = "internal error during ingestion"

MAX_ATTEMPTS: Final = 8
"""Failed runs in a row after which no retry is scheduled (about 3 h of backoff in all)."""
RETRY_BASE_SECONDS: Final = 60.0
RETRY_MAX_SECONDS: Final = 3600.0

_jitter = random.Random()  # noqa: S311 - jitter, not cryptography


def retry_delay(attempt: int) -> float:
    """Seconds before retrying after failed run number ``attempt`` (1-based): 1 min doubling up to 1 h,
    ±10 % so that collections failed by one outage do not all come back at once."""
    nominal = exponential_ceiling(attempt, base=RETRY_BASE_SECONDS, cap=RETRY_MAX_SECONDS)
    return float(nominal * _jitter.uniform(0.9, 1.1))


IngestionOutcome = Literal["complete", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class IngestionReport:
    """What one run did. ``owners`` counts distinct holders, ``token_owner_rows`` the ``nft_ownership``
    rows now held, ``broken`` the tokens whose metadata Alchemy could not read, ``pages`` the token pages."""

    contract_address: str
    state: IngestionOutcome
    nfts: int = 0
    broken: int = 0
    owners: int = 0
    token_owner_rows: int = 0
    pages: int = 0
    duration_seconds: float = 0.0
    error: str | None = None
    retry_in_seconds: float | None = None

    def as_dict(self) -> dict[str, object]:
        """The camelCase JSON form (the handler's result, stored by the idempotency layer)."""
        return {to_camel(name): value for name, value in asdict(self).items()}


class _StopIngestion(SuchMarketError):  # noqa: N818 - an outcome, not a fault
    """The run ends ``failed`` with ``message`` and returns normally; ``retryable`` when a later run would
    get further (the time budget ran out: the next run resumes), otherwise retrying would not help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def time_budget_for(remaining_ms: int, *, cap: float = DEFAULT_TIME_BUDGET_SECONDS) -> float:
    """The time budget of a run that has ``remaining_ms`` before Lambda stops it: the remaining time less
    a margin (``TIME_BUDGET_MARGIN_SECONDS``, or a tenth of the remaining time when that is shorter)."""
    remaining = max(0.0, remaining_ms / 1000)
    return max(0.0, min(cap, remaining - min(TIME_BUDGET_MARGIN_SECONDS, remaining / 10)))


def ingest_collection(
    *,
    conn: Connection,
    alchemy: AlchemyClient,
    publisher: EventPublisher,
    address: str,
    reason: str,
    time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    prefetch_pages: int = DEFAULT_PREFETCH_PAGES,
    range_concurrency: int = DEFAULT_RANGE_CONCURRENCY,
    clock: Callable[[], float] = time.monotonic,
) -> IngestionReport:
    """Ingest the collection at ``address`` completely (see the module docstring).

    Returns the report of a ``complete`` run, of a ``failed`` one that retrying would not fix (no NFT
    contract, time budget, truncated listing), or of a ``skipped`` one (another run holds the
    collection). Raises ``UpstreamError`` after recording the failure when Alchemy could not answer,
    and re-raises anything unexpected after recording a generic error.
    """
    if batch_tokens < 1 or prefetch_pages < 1 or range_concurrency < 1:
        raise ValueError("batch_tokens, prefetch_pages and range_concurrency must be at least 1")
    if not 1 <= len(reason) <= MAX_REASON_LENGTH:
        raise ValueError(f"reason must be 1-{MAX_REASON_LENGTH} characters")  # checked before the work, not after
    run = _Run(
        conn=conn,
        alchemy=alchemy,
        publisher=publisher,
        address=normalize_address(address),
        reason=reason,
        deadline=clock() + time_budget_seconds,
        batch_tokens=batch_tokens,
        prefetch_pages=prefetch_pages,
        range_concurrency=range_concurrency,
        clock=clock,
    )
    with ingestion_lock(conn=conn, address=run.address) as acquired:
        if not acquired:
            logger.info("another ingestion of this collection is running; skipped", extra={"contract": run.address})
            return run.report("skipped")
        return run.execute()


@dataclass(frozen=True, slots=True)
class _Owners:
    """The holder listing as ``nft_ownership`` rows, and whether the listing reached its end."""

    rows: list[tuple[str, int, int]]
    complete: bool


class _Run:
    """One ingestion run: its inputs, its deadline and what it has done so far."""

    def __init__(
        self,
        *,
        conn: Connection,
        alchemy: AlchemyClient,
        publisher: EventPublisher,
        address: str,
        reason: str,
        deadline: float,
        batch_tokens: int,
        prefetch_pages: int,
        range_concurrency: int,
        clock: Callable[[], float],
    ) -> None:
        self.conn = conn
        self.alchemy = alchemy
        self.publisher = publisher
        self.address = address
        self.reason = reason
        self.deadline = deadline
        self.batch_tokens = batch_tokens
        self.prefetch_pages = prefetch_pages
        self.range_concurrency = range_concurrency
        self.clock = clock
        self.started = clock()
        self.stop = threading.Event()
        self.token_ids: set[int] = set()
        self.broken: set[int] = set()
        self.pages = 0
        self.written = 0
        self.owners = 0
        self.owner_rows = 0
        self.prior_attempts = 0
        self.resume_key: str | None = None
        self.listed_through: int | None = None

    # -- the run ------------------------------------------------------------------------------------

    def execute(self) -> IngestionReport:
        existing = get_collection(conn=self.conn, address=self.address)
        collection_id = existing.id if existing is not None else None
        try:
            if existing is not None:
                self._resume_from(existing)
                set_ingestion_state(conn=self.conn, collection_id=existing.id, state="running")
            metadata = self.alchemy.get_contract_metadata(contract=self.address)
            if metadata is None:
                raise _StopIngestion(NOT_A_CONTRACT_ERROR)
            row = upsert_collection(conn=self.conn, metadata=collection_metadata(metadata))
            collection_id = row.id
            if existing is None:
                set_ingestion_state(conn=self.conn, collection_id=collection_id, state="running")
            supply = int(metadata.total_supply) if metadata.total_supply is not None else None
            self._ingest(collection_id, single_owner=metadata.token_type == ERC721, total_supply=supply)
        except _StopIngestion as stop:
            retry = self._record_failure(collection_id, str(stop), retryable=stop.retryable)
            return self.report("failed", error=str(stop), retry_in_seconds=retry)
        except UpstreamError as error:
            # The state is public (GET …/refresh): the provider and status only; the upstream's text is logged.
            logger.warning("upstream failure during ingestion", extra={"contract": self.address, "error": str(error)})
            public = public_upstream_failure(error)
            transient = isinstance(error, UpstreamUnavailable | UpstreamProtocolError)
            retry = self._record_failure(collection_id, public, retryable=transient)
            if retry is None:
                raise
            return self.report("failed", error=public, retry_in_seconds=retry)
        except Exception:
            self._record_failure(collection_id, INTERNAL_ERROR, retryable=True)
            raise
        finally:
            self.stop.set()
        return self.report("complete")

    def report(
        self, state: IngestionOutcome, *, error: str | None = None, retry_in_seconds: float | None = None
    ) -> IngestionReport:
        return IngestionReport(
            contract_address=self.address,
            state=state,
            nfts=len(self.token_ids),
            broken=len(self.broken),
            owners=self.owners,
            token_owner_rows=self.owner_rows,
            pages=self.pages,
            duration_seconds=round(self.clock() - self.started, 3),
            error=error,
            retry_in_seconds=None if retry_in_seconds is None else round(retry_in_seconds, 1),
        )

    def _resume_from(self, existing: CollectionRow) -> None:
        """Carry on from a failed run: its attempt count (unless this run was asked for anew) and, when it
        committed token batches, its listing position and the tokens it listed."""
        if self.reason == RETRY_REASON:
            self.prior_attempts = existing.ingestion_attempts
        if existing.ingestion_resume_key is None or existing.ingestion_listed_through is None:
            return
        self.resume_key = existing.ingestion_resume_key
        self.listed_through = int(existing.ingestion_listed_through)
        self.token_ids.update(
            get_token_ids_through(conn=self.conn, collection_id=existing.id, through=self.listed_through)
        )
        logger.info(
            "resuming the token listing of a failed ingestion",
            extra={"contract": self.address, "listed": len(self.token_ids)},
        )

    def _ingest(self, collection_id: uuid.UUID, *, single_owner: bool, total_supply: int | None) -> None:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-owners") as pool:
            owners_future = pool.submit(self._list_owners)
            try:
                listed_completely = self._load_nfts(collection_id, owners_future, total_supply)
                owners = self._result(owners_future)
            finally:
                self.stop.set()  # the owner thread stops at its next page if the token pass failed
        if not listed_completely or not owners.complete:
            raise _StopIngestion("the upstream listing stopped before its end (page cap or repeated page key)")
        rows = self._single_owner_rows(owners.rows) if single_owner else owners.rows
        self._finish(collection_id, rows)

    def _token_pages(self, total_supply: int | None) -> Iterator[NftPage]:
        """Every token page from the resume point on: the first page, then parallel id ranges when it shows
        dense ids (``dense_id_range``), else the ``pageKey`` chain."""
        first = self.alchemy.get_nfts_for_contract_page(contract=self.address, start_token=self.resume_key)
        yield first
        if first.page_key is None:
            return
        lowest = min(self.token_ids) if self.token_ids else None
        ranges = dense_id_range(first, total_supply=total_supply, lowest_listed=lowest)
        rest = self.alchemy.max_pages - 1
        if ranges is None:
            yield from self.alchemy.iter_nfts_for_contract(
                contract=self.address, start_token=first.page_key, max_pages=rest
            )
            return
        logger.info(
            "token ids are dense: listing id ranges in parallel",
            extra={"contract": self.address, "from": ranges[0], "to": ranges[1]},
        )
        yield from self.alchemy.iter_nfts_for_id_range(
            contract=self.address,
            start=ranges[0],
            end=ranges[1],
            concurrency=self.range_concurrency,
            max_pages=rest,
        )

    def _load_nfts(self, collection_id: uuid.UUID, owners_future: Future[_Owners], total_supply: int | None) -> bool:
        """Write every token page; True when the listing reached its end."""
        pages = _Prefetch(
            self._token_pages(total_supply),
            depth=self.prefetch_pages,
            stop=self.stop,
            name="ingest-nfts",
        )
        batch: list[NftRecord] = []
        complete = False
        try:
            while (page := pages.get(timeout=self._remaining())) is not None:
                self.pages += 1
                complete = page.page_key is None
                batch.extend(self._records(page))
                if len(batch) >= self.batch_tokens:
                    self._write(collection_id, batch, next_key=page.page_key)
                    batch = []
                if owners_future.done() and owners_future.exception() is not None:
                    break  # the holder listing failed: fail now, not after the last token page
            if batch:
                self._write(collection_id, batch, next_key=None)
        except queue.Empty:
            raise _StopIngestion(TIME_BUDGET_ERROR, retryable=True) from None
        finally:
            pages.close()
        return complete

    def _records(self, page: NftPage) -> Iterator[NftRecord]:
        for nft in page.nfts:
            record = nft_record(nft)
            self.token_ids.add(record.token_id)
            if record.metadata_error:
                self.broken.add(record.token_id)
            else:
                self.broken.discard(record.token_id)
            yield record

    def _write(self, collection_id: uuid.UUID, batch: list[NftRecord], *, next_key: str | None) -> None:
        """Store a batch of whole pages and record the progress: ``next_key`` is where the listing goes on
        (None: the batch ends the listing, and the resume point stays where it was)."""
        if self.clock() > self.deadline:
            raise _StopIngestion(TIME_BUDGET_ERROR, retryable=True)
        # Token-order ranks in the batch's own transaction, while the listing is still on the wire: pages
        # arrive in id order, so upsert_nfts appends them as it inserts the rows, and the finishing
        # transaction's assign_positions, on the run's critical path, finds nothing left to rank. Rarity
        # waits for the finish: it needs every token.
        self.written += upsert_nfts(conn=self.conn, collection_id=collection_id, nfts=batch, rarity=False)
        if next_key is not None:
            self.resume_key = next_key
            highest = max(record.token_id for record in batch)
            self.listed_through = highest if self.listed_through is None else max(self.listed_through, highest)
        record_ingestion_progress(
            conn=self.conn,
            collection_id=collection_id,
            resume_key=self.resume_key,
            listed_through=self.listed_through,
        )

    def _list_owners(self) -> _Owners:
        """Every holder with its balances (runs on the owner thread, stops with the run)."""
        rows: list[tuple[str, int, int]] = []
        holders = 0
        complete = False
        for page in self.alchemy.get_owners_for_contract(contract=self.address, with_token_balances=True):
            holders += len(page.owners)
            rows.extend(
                (owner.address, int(held.token_id), int(held.balance))
                for owner in page.owners
                for held in owner.token_balances
            )
            complete = page.page_key is None
            if self.stop.is_set() or self.clock() > self.deadline:
                break
        if holders and not rows:
            # Holders without a single balance would wipe the collection's ownership: refuse them.
            raise _StopIngestion("the holder listing carried no token balances")
        return _Owners(rows=rows, complete=complete)

    def _result(self, owners_future: Future[_Owners]) -> _Owners:
        try:
            return owners_future.result(timeout=self._remaining())
        except TimeoutError:
            raise _StopIngestion(TIME_BUDGET_ERROR, retryable=True) from None

    def _single_owner_rows(self, rows: Iterable[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
        """One holder per ERC-721 token. A token listed with two holders (it moved while the listing was
        being read) is re-read with getOwnersForNFT, up to ``MAX_CONFLICT_LOOKUPS`` of them; the others
        get no holder this run, and the ownership re-verification job reads them later."""
        owner_of: dict[int, str] = {}
        conflicted: set[int] = set()
        for owner, token_id, balance in rows:
            if balance > 0 and owner_of.setdefault(token_id, owner) != owner:
                conflicted.add(token_id)
        for index, token_id in enumerate(sorted(conflicted)):
            del owner_of[token_id]
            if index >= MAX_CONFLICT_LOOKUPS:
                continue
            holders = self.alchemy.get_owners_for_nft(contract=self.address, token_id=token_id, token_type=ERC721)
            if len(holders) == 1:
                owner_of[token_id] = holders[0].address
        if len(conflicted) > MAX_CONFLICT_LOOKUPS:
            logger.warning(
                "ERC-721 tokens listed with several holders were left without one",
                extra={"contract": self.address, "tokens": len(conflicted) - MAX_CONFLICT_LOOKUPS},
            )
        return [(owner, token_id, 1) for token_id, owner in owner_of.items()]

    def _finish(self, collection_id: uuid.UUID, owner_rows: list[tuple[str, int, int]]) -> None:
        """Prune, rank, count traits, rank rarity, replace ownership, mark complete and emit the event: one
        transaction."""
        if self.clock() > self.deadline:
            raise _StopIngestion(TIME_BUDGET_ERROR, retryable=True)
        holders = len({owner for owner, _, balance in owner_rows if balance > 0})
        with outbox_transaction(self.conn, self.publisher) as tx:
            set_local_statement_timeout(conn=self.conn, milliseconds=FINISH_STATEMENT_TIMEOUT_MS)
            delete_unlisted_nfts(conn=self.conn, collection_id=collection_id, listed_token_ids=self.token_ids)
            assign_positions(conn=self.conn, collection_id=collection_id)
            rebuild_traits(conn=self.conn, collection_id=collection_id)
            rank_rarity(conn=self.conn, collection_id=collection_id)
            synced = replace_owners_announcing(
                conn=self.conn, tx=tx, collection_id=collection_id, contract_address=self.address, owners=owner_rows
            )
            set_ingestion_state(
                conn=self.conn,
                collection_id=collection_id,
                state="complete",
                nfts_indexed=len(self.token_ids),
                owners_indexed=holders,
            )
            tx.add(Event(CollectionRefreshed(contract_address=self.address, reason=self.reason)))
        self.owners = holders
        self.owner_rows = synced.replaced.held
        logger.info(
            "collection ingested",
            extra={
                "contract": self.address,
                "nfts": len(self.token_ids),
                "owners": holders,
                "pages": self.pages,
                "seconds": round(self.clock() - self.started, 3),
            },
        )

    def _record_failure(self, collection_id: uuid.UUID | None, error: str, *, retryable: bool) -> float | None:
        """State ``failed`` with ``error``, the attempt counted and, when ``retryable`` and attempts are
        left, a retry scheduled (``collection.updated`` too if token rows changed); returns the seconds
        until that retry, or None. Never raises, so the failure that brought us here is the one the caller
        sees (a state that cannot be recorded schedules nothing)."""
        logger.warning("collection ingestion failed", extra={"contract": self.address, "error": error})
        if collection_id is None:
            return None
        attempts = self.prior_attempts + 1
        retry = retry_delay(attempts) if retryable and attempts < MAX_ATTEMPTS else None
        try:
            with outbox_transaction(self.conn, self.publisher) as tx:
                record_ingestion_failure(
                    conn=self.conn, collection_id=collection_id, error=error, attempts=attempts, retry_in_seconds=retry
                )
                if self.written:
                    tx.add(Event(CollectionUpdated(contract_address=self.address, reason="ingestion_failed")))
        except Exception:  # the original failure matters more; the state is best effort
            logger.exception("could not record the failed ingestion", extra={"contract": self.address})
            return None
        return retry

    def _remaining(self) -> float:
        return max(0.0, self.deadline - self.clock())


def dense_id_range(first: NftPage, *, total_supply: int | None, lowest_listed: int | None) -> tuple[int, int] | None:
    """``(start, end)``: the ids left to list after ``first`` when they look dense, else ``None``.

    Dense means: ``first`` is a full page of consecutive integer ids whose page key is the next id, and the
    contract states its supply, so the ids run from the lowest one seen (``lowest_listed``: the lowest id a
    resumed run had listed already) up to that plus the supply. ``None`` too when at most one page is
    left (nothing to parallelize). Gaps or a supply that undercounts cost nothing but parallelism: the
    range listing copes with both.
    """
    if total_supply is None or total_supply < 1 or len(first.nfts) < MAX_PAGE_SIZE:
        return None
    ids = [int(nft.token_id) for nft in first.nfts]
    start = page_key_token_id(first.page_key)
    if start is None or ids != list(range(ids[0], ids[0] + len(ids))) or start != ids[-1] + 1:
        return None
    lowest = ids[0] if lowest_listed is None else min(lowest_listed, ids[0])
    end = lowest + total_supply
    return (start, end) if end - start > MAX_PAGE_SIZE else None


class _End:
    """The source is exhausted."""


@dataclass(frozen=True, slots=True)
class _Failure:
    """The source raised ``error``."""

    error: BaseException


class _Prefetch:
    """Iterates ``source`` on a daemon thread, at most ``depth`` items ahead of the consumer.

    ``get`` returns the next item, ``None`` at the end, re-raises what the source raised, and raises
    ``queue.Empty`` when nothing arrives within ``timeout``. ``close`` (or ``stop``) ends the thread after
    the item it is reading; the source's own timeouts bound how long that takes.
    """

    def __init__(self, source: Iterator[NftPage], *, depth: int, stop: threading.Event, name: str) -> None:
        self._source = source
        self._queue: queue.Queue[NftPage | _End | _Failure] = queue.Queue(maxsize=depth)
        self._stop = stop
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def get(self, *, timeout: float) -> NftPage | None:
        item = self._queue.get(timeout=timeout)
        if isinstance(item, _Failure):
            raise item.error
        if isinstance(item, _End):
            return None
        return item

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=TIME_BUDGET_MARGIN_SECONDS)

    def _stopped(self) -> bool:
        return self._closed.is_set() or self._stop.is_set()

    def _offer(self, item: NftPage | _End | _Failure) -> bool:
        while not self._stopped():
            try:
                self._queue.put(item, timeout=0.05)
            except queue.Full:
                continue
            return True
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._offer(item):
                    return
            self._offer(_End())
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._offer(_Failure(error))
        finally:
            if isinstance(self._source, Generator):
                self._source.close()


__all__ = [
    "DEFAULT_TIME_BUDGET_SECONDS",
    "MAX_ATTEMPTS",
    "IngestionReport",
    "dense_id_range",
    "ingest_collection",
    "retry_delay",
    "time_budget_for",
]
