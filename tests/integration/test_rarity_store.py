"""Rarity ranks in PostgreSQL (migration 0016, ``writes.rank_rarity``) and rarity-order pages
(``queries.get_nft_page(sort=...)``): the stored ranks and scores are the reference method's for the
stored traits; every trait change re-ranks in its own transaction; pages rarest-first and most-common-first
by page number at every depth, by cursor and with trait filters (both plans) equal a Python model, with
unranked tokens last and holes left by deletes never giving a wrong page."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Mapping, Sequence

import psycopg
import pytest

from such_market.collections.queries import NftPage, get_nft, get_nft_page
from such_market.collections.writes import (
    CollectionMetadata,
    NftRecord,
    delete_unlisted_nfts,
    list_tokens,
    rank_rarity,
    rebuild_traits,
    set_ingestion_state,
    upsert_collection,
    upsert_nfts,
)
from tests.fixtures.open_rarity_reference import openrarity_metadata, reference_ranks

Conn = psycopg.Connection[tuple[object, ...]]

TRAITS = {
    "Background": [f"bg{i}" for i in range(6)],
    "Hat": ["cap", "crown", "beanie"],
    "Eyes": ["laser", "sleepy", "wide", "3d"],
}


def attributes_of(rng: random.Random) -> list[dict[str, str]]:
    attributes = []
    for trait_type, values in TRAITS.items():
        if rng.random() < 0.15:
            continue  # absent: scored with the type's absence share
        # skewed: the first values are the common ones
        attributes.append({"trait_type": trait_type, "value": values[min(int(rng.expovariate(0.9)), len(values) - 1)]})
    for _ in range(rng.choice([0, 0, 0, 1, 2])):  # several values of one type (CryptoPunks' Accessory)
        attributes.append({"trait_type": "Accessory", "value": rng.choice(["earring", "pipe", "mole", "chain"])})
    return attributes


def record(token_id: int, attributes: list[dict[str, str]]) -> NftRecord:
    return NftRecord(token_id=token_id, title=f"#{token_id}", attributes=attributes)


def new_collection(conn: Conn, *, indexed: bool = True) -> uuid.UUID:
    """A collection; ``indexed``: an ingestion has completed (so every trait change re-ranks it)."""
    row = upsert_collection(conn=conn, metadata=CollectionMetadata(contract_address="0x" + "ab" * 20, name="R"))
    if indexed:
        set_ingestion_state(conn=conn, collection_id=row.id, state="complete")
    return row.id


def load(conn: Conn, count: int = 600, seed: int = 5) -> tuple[uuid.UUID, dict[int, list[dict[str, str]]]]:
    rng = random.Random(seed)
    collection_id = new_collection(conn)
    tokens = {token_id: attributes_of(rng) for token_id in rng.sample(range(10 * count), count)}
    items = list(tokens.items())
    for start in range(0, len(items), 250):
        upsert_nfts(conn=conn, collection_id=collection_id, nfts=[record(t, a) for t, a in items[start : start + 250]])
    rebuild_traits(conn=conn, collection_id=collection_id)
    return collection_id, tokens


def expected_ranks(tokens: Mapping[int, list[dict[str, str]]]) -> dict[int, tuple[int, float]]:
    pairs = {token_id: [(a["trait_type"], a["value"]) for a in attributes] for token_id, attributes in tokens.items()}
    return reference_ranks(openrarity_metadata(pairs))


def stored(conn: Conn, collection_id: uuid.UUID) -> dict[int, tuple[int | None, float | None, int | None]]:
    rows = conn.execute(
        "SELECT token_id, rarity_rank, rarity_score, rarity_position FROM nfts WHERE collection_id = %s",
        (collection_id,),
    ).fetchall()
    return {int(t): (rank, score, position) for t, rank, score, position in rows}  # type: ignore[call-overload]


def assert_ranks_are_the_reference(conn: Conn, collection_id: uuid.UUID, tokens: Mapping[int, list]) -> None:
    expected = expected_ranks(tokens)
    held = stored(conn, collection_id)
    for token_id, (rank, score) in expected.items():
        stored_rank, stored_score, _ = held[token_id]
        assert stored_rank == rank, token_id
        assert stored_score is not None
        assert math.isclose(stored_score, score, rel_tol=1e-9)
    positions = sorted((held[t][0], t, held[t][2]) for t in expected)  # type: ignore[type-var]
    assert [position for _, _, position in positions] == list(range(len(expected)))


def model_order(
    conn: Conn, collection_id: uuid.UUID, *, descending: bool, matching: Sequence[int] | None = None
) -> list[int]:
    """Placed tokens (a rarity position) by (rank, token id), reversed for -rarity, then the others (not
    ranked, or released by a delete until the next ranking) by token id."""
    held = stored(conn, collection_id)
    keep = set(held if matching is None else matching)
    placed = sorted((held[t][0], t) for t in keep if held[t][2] is not None)  # type: ignore[type-var]
    if descending:
        placed.reverse()
    return [t for _, t in placed] + sorted(t for t in keep if held[t][2] is None)


def ids(page: NftPage) -> list[int]:
    return [int(nft.token_id) for nft in page.nfts]


def by_pages(
    conn: Conn, collection_id: uuid.UUID, sort: str, size: int, filters: Mapping[str, Sequence[str]] = {}
) -> list[int]:
    found: list[int] = []
    page = 0
    while True:
        result = get_nft_page(
            conn=conn,
            collection_id=collection_id,
            page=page,
            page_size=size,
            filters=filters,
            sort=sort,  # type: ignore[arg-type]
        )
        found += ids(result)
        if not result.has_more:
            assert len(result.nfts) <= size
            return found
        assert len(result.nfts) == size
        page += 1


def by_cursor(
    conn: Conn, collection_id: uuid.UUID, sort: str, size: int, filters: Mapping[str, Sequence[str]] = {}
) -> list[int]:
    found: list[int] = []
    after: int | None = None
    while True:
        result = get_nft_page(
            conn=conn,
            collection_id=collection_id,
            page=0,
            page_size=size,
            filters=filters,
            after_token_id=after,
            sort=sort,  # type: ignore[arg-type]
        )
        found += ids(result)
        if not result.has_more:
            return found
        after = result.next_cursor_token_id


def facets(tokens: Mapping[int, list[dict[str, str]]]) -> set[tuple[str, str]]:
    return {(a["trait_type"], a["value"]) for attributes in tokens.values() for a in attributes}


def current_rarity_bitmaps(conn: Conn, collection_id: uuid.UUID) -> int:
    row = conn.execute(
        "SELECT count(*) FROM collection_traits AS ct JOIN collection_trait_generations AS g USING (collection_id)"
        " WHERE ct.collection_id = %s AND ct.rarity_positions_generation = g.generation",
        (collection_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def matching(tokens: Mapping[int, list[dict[str, str]]], filters: Mapping[str, Sequence[str]]) -> list[int]:
    def matches(attributes: list[dict[str, str]]) -> bool:
        held = {(a["trait_type"], a["value"]) for a in attributes}
        return all(any((trait_type, value) in held for value in values) for trait_type, values in filters.items())

    return [token_id for token_id, attributes in tokens.items() if matches(attributes)]


def test_stored_ranks_are_the_reference_methods(db: Conn) -> None:
    collection_id, tokens = load(db)
    assert_ranks_are_the_reference(db, collection_id, tokens)
    detail = get_nft(conn=db, collection_id=collection_id, token_id=next(iter(tokens)))
    assert detail is not None
    assert detail.rarity is not None
    assert detail.rarity.rank >= 1


@pytest.mark.parametrize("sort", ["rarity", "-rarity"])
@pytest.mark.parametrize("size", [1, 7, 50])
def test_rarity_pages_by_number_and_cursor_follow_the_model(db: Conn, sort: str, size: int) -> None:
    collection_id, tokens = load(db)
    expected = model_order(db, collection_id, descending=sort == "-rarity")
    assert by_pages(db, collection_id, sort, size) == expected
    assert by_cursor(db, collection_id, sort, size) == expected
    first = get_nft_page(conn=db, collection_id=collection_id, page=0, page_size=size, sort=sort)  # type: ignore[arg-type]
    assert first.total == len(tokens)
    ranks = [nft.rarity.rank for nft in first.nfts if nft.rarity]
    assert ranks == (sorted(ranks) if sort == "rarity" else sorted(ranks, reverse=True))
    if sort == "rarity":
        assert ranks[0] == 1


@pytest.mark.parametrize(
    "filters",
    [
        {"Background": ["bg0"]},  # common: the walk
        {"Background": ["bg5"]},  # rare: the sorted matches
        {"Hat": ["crown", "beanie"], "Eyes": ["laser"]},
        {"Accessory": ["pipe"]},
        {"Hat": ["no such hat"]},
    ],
)
@pytest.mark.parametrize("sort", ["rarity", "-rarity"])
@pytest.mark.parametrize("bitmaps", [True, False], ids=["rarity-bitmaps", "walk-or-sort"])
def test_filtered_rarity_pages_follow_the_model(
    db: Conn, filters: dict[str, list[str]], sort: str, bitmaps: bool
) -> None:
    collection_id, tokens = load(db)
    if bitmaps:  # as an ingestion's finish leaves it: facets first, then ranks and their bitmaps
        rank_rarity(conn=db, collection_id=collection_id)
    assert current_rarity_bitmaps(db, collection_id) == (bitmaps and len(facets(tokens)))
    expected = model_order(db, collection_id, descending=sort == "-rarity", matching=matching(tokens, filters))
    assert by_pages(db, collection_id, sort, 9, filters) == expected
    assert by_cursor(db, collection_id, sort, 9, filters) == expected
    page = get_nft_page(conn=db, collection_id=collection_id, page=0, page_size=9, filters=filters, sort=sort)  # type: ignore[arg-type]
    assert page.total == len(expected)


def test_a_trait_change_reranks_in_the_same_transaction(db: Conn) -> None:
    collection_id, tokens = load(db)
    common = max(tokens, key=lambda t: expected_ranks(tokens)[t][0])
    tokens[common] = [{"trait_type": "Hat", "value": "golden halo"}]  # the only one: a unique attribute
    with db.transaction():
        upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(common, tokens[common])])
        rank, _, position = stored(db, collection_id)[common]
        assert (rank, position) == (1, 0)
    assert_ranks_are_the_reference(db, collection_id, tokens)
    # The filtered pages follow the new places (bitmaps rebuilt with the ranks, or ignored when stale).
    rebuild_traits(conn=db, collection_id=collection_id)
    rank_rarity(conn=db, collection_id=collection_id)
    assert current_rarity_bitmaps(db, collection_id) == len(facets(tokens))
    for filters in ({"Hat": ["golden halo", "crown"]}, {"Background": ["bg0", "bg1"], "Eyes": ["wide"]}):
        expected = model_order(db, collection_id, descending=False, matching=matching(tokens, filters))
        assert by_pages(db, collection_id, "rarity", 5, filters) == expected
        assert by_cursor(db, collection_id, "rarity", 5, filters) == expected
    gone = next(iter(tokens))
    delete_unlisted_nfts(conn=db, collection_id=collection_id, listed_token_ids=set(tokens) - {gone})
    assert current_rarity_bitmaps(db, collection_id) == 0  # a delete bumped the generation: stale


def test_new_tokens_rerank_and_unread_tokens_come_last(db: Conn) -> None:
    collection_id, tokens = load(db, count=120)
    tokens[10**9] = [{"trait_type": "Eyes", "value": "laser"}]
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(10**9, tokens[10**9])])
    assert_ranks_are_the_reference(db, collection_id, tokens)
    listed = list_tokens(conn=db, collection_id=collection_id, token_ids=[5, 10**10])  # a transfer: no metadata
    assert listed
    expected = model_order(db, collection_id, descending=False)
    assert expected[-len(listed) :] == sorted(listed)
    for sort in ("rarity", "-rarity"):
        order = model_order(db, collection_id, descending=sort == "-rarity")
        assert by_pages(db, collection_id, sort, 11) == order
        assert by_cursor(db, collection_id, sort, 11) == order
    unread = get_nft(conn=db, collection_id=collection_id, token_id=listed[-1])
    assert unread is not None
    assert unread.rarity is None


def test_a_delete_never_gives_a_wrong_page_and_the_next_ranking_closes_the_hole(db: Conn) -> None:
    collection_id, tokens = load(db, count=200)
    held = stored(db, collection_id)
    gone = next(t for t in held if held[t][2] == len(held) // 2)  # the places above it are released
    delete_unlisted_nfts(conn=db, collection_id=collection_id, listed_token_ids=[t for t in tokens if t != gone])
    del tokens[gone]
    for sort in ("rarity", "-rarity"):
        order = model_order(db, collection_id, descending=sort == "-rarity")
        assert gone not in order
        assert by_pages(db, collection_id, sort, 13) == order
    rank_rarity(conn=db, collection_id=collection_id)
    assert_ranks_are_the_reference(db, collection_id, tokens)
    assert rank_rarity(conn=db, collection_id=collection_id) == 0  # nothing moves: nothing is rewritten


def test_a_collection_never_indexed_is_ranked_when_its_ingestion_finishes_not_before(db: Conn) -> None:
    collection_id = new_collection(db, indexed=False)
    tokens = {token_id: [{"trait_type": "Hat", "value": f"h{token_id % 3}"}] for token_id in range(30)}
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(t, a) for t, a in tokens.items()])
    assert {rank for rank, _, _ in stored(db, collection_id).values()} == {None}  # pages read before ingestion
    by_rarity = get_nft_page(conn=db, collection_id=collection_id, page=0, page_size=30, sort="rarity")
    assert ids(by_rarity) == sorted(tokens)  # unranked: token order
    rank_rarity(conn=db, collection_id=collection_id)  # what the ingestion's finish runs
    assert_ranks_are_the_reference(db, collection_id, tokens)


def test_unknown_sort_never_reaches_sql() -> None:
    from such_market.errors import BadRequestError
    from such_market.validation import parse_sort

    assert parse_sort(None) == "tokenId"
    assert parse_sort("-rarity") == "-rarity"
    with pytest.raises(BadRequestError) as raised:
        parse_sort("rarity; drop table nfts")
    assert raised.value.code == "invalid_sort"
