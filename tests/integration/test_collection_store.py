"""The collections data-access layer against real PostgreSQL: pages by number and by cursor equal the naive
OFFSET ordering at every depth (huge and non-contiguous token ids included), trait filters follow a Python
model (AND across types, OR within one) whether their totals come from current trait bitmaps or from the
exact count (stale bitmaps are ignored), ranks stay dense as tokens arrive, ingestion writes replace what
they should, ownership syncs keep the summaries consistent, and deep pages are index range scans."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from such_market.collections.queries import (
    NftPage,
    get_collection,
    get_nft,
    get_nft_page,
    get_owned_tokens,
    get_token_owners,
    get_traits,
)
from such_market.collections.writes import (
    CollectionMetadata,
    NftRecord,
    assign_positions,
    delete_unlisted_nfts,
    mark_refresh,
    rebuild_trait_bitmaps,
    rebuild_traits,
    replace_collection_owners,
    set_ingestion_state,
    set_token_owners,
    upsert_collection,
    upsert_nfts,
)
from such_market.db.consistency import check_summaries

Conn = psycopg.Connection[tuple[object, ...]]

TRAIT_VALUES = {
    "background": ["blue", "red", "green", "gold"],
    "eyes": ["laser", "sleepy", "wide"],
    "hat": ["cap", "crown"],
}
VALUES = sum(map(len, TRAIT_VALUES.values()))


def address(n: int) -> str:
    return f"0x{n:040x}"


def new_collection(conn: Conn, n: int = 0xC0, token_type: str = "ERC721") -> uuid.UUID:  # noqa: S107
    row = upsert_collection(
        conn=conn,
        metadata=CollectionMetadata(contract_address=address(n), name=f"collection {n}", token_type=token_type),  # type: ignore[arg-type]
    )
    return row.id


def token_ids(count: int, seed: int) -> list[int]:
    """Non-contiguous ids: small ones with gaps, ids around 2**64, and ids near the top of uint256."""
    rng = random.Random(seed)
    ids: set[int] = set()
    while len(ids) < count:
        kind = rng.random()
        if kind < 0.6:
            ids.add(rng.randrange(0, 20 * count))
        elif kind < 0.9:
            ids.add(2**64 + rng.randrange(-1000, 10**12))
        else:
            ids.add(2**256 - 1 - rng.randrange(0, 10**30))
    return list(ids)


def random_attributes(rng: random.Random) -> list[dict[str, str]]:
    attributes = []
    for trait_type, values in TRAIT_VALUES.items():
        roll = rng.random()
        if roll < 0.1:
            continue  # the token lacks this trait
        attributes.append({"trait_type": trait_type, "value": rng.choice(values)})
        if roll > 0.95:  # a second value of the same type (it happens in real metadata)
            attributes.append({"trait_type": trait_type, "value": rng.choice(values)})
    return attributes


def record(token_id: int, attributes: list[dict[str, str]]) -> NftRecord:
    return NftRecord(
        token_id=token_id,
        title=f"Token #{token_id}",
        description="a test token",
        image_url=f"https://img.example/{token_id}.png",
        thumbnail_url=f"https://img.example/{token_id}_t.png",
        metadata={"name": f"Token #{token_id}", "attributes": attributes},
        attributes=attributes,
    )


class Catalogue:
    """A loaded collection plus the Python model of what it holds."""

    def __init__(self, collection_id: uuid.UUID, attributes: dict[int, list[dict[str, str]]]) -> None:
        self.collection_id = collection_id
        self.attributes = attributes
        self.ordered = sorted(attributes)

    def matching(self, filters: Mapping[str, Sequence[str]]) -> list[int]:
        def matches(token_id: int) -> bool:
            held = {(a["trait_type"], a["value"]) for a in self.attributes[token_id]}
            return all(any((trait_type, value) in held for value in values) for trait_type, values in filters.items())

        return [token_id for token_id in self.ordered if matches(token_id)]


def load(conn: Conn, collection_id: uuid.UUID, tokens: Sequence[int], seed: int) -> dict[int, list[dict[str, str]]]:
    """Ingest ``tokens`` in shuffled batches (so ranks are appended and renumbered) and rebuild the facets."""
    rng = random.Random(seed)
    attributes = {token_id: random_attributes(rng) for token_id in tokens}
    shuffled = list(tokens)
    rng.shuffle(shuffled)
    for start in range(0, len(shuffled), 1000):
        batch = shuffled[start : start + 1000]
        upsert_nfts(conn=conn, collection_id=collection_id, nfts=[record(t, attributes[t]) for t in batch])
    rebuild_traits(conn=conn, collection_id=collection_id)
    return attributes


@pytest.fixture
def catalogue(db: Conn) -> Catalogue:
    collection_id = new_collection(db)
    return Catalogue(collection_id, load(db, collection_id, token_ids(5000, seed=7), seed=11))


def naive_page(conn: Conn, collection_id: uuid.UUID, offset: int, limit: int) -> list[str]:
    rows = conn.execute(
        "SELECT token_id::text FROM nfts WHERE collection_id = %s ORDER BY nfts.token_id OFFSET %s LIMIT %s",
        (collection_id, offset, limit),
    ).fetchall()
    return [str(row[0]) for row in rows]


def ids(page: NftPage) -> list[int]:
    return [int(nft.token_id) for nft in page.nfts]


def walk(conn: Conn, collection_id: uuid.UUID, page_size: int, filters: Mapping[str, Sequence[str]]) -> list[int]:
    seen: list[int] = []
    cursor: int | None = None
    while True:
        page = get_nft_page(
            conn=conn, collection_id=collection_id, page=0, page_size=page_size, filters=filters, after_token_id=cursor
        )
        seen.extend(ids(page))
        if not page.has_more:
            return seen
        assert page.next_cursor_token_id == seen[-1]
        cursor = page.next_cursor_token_id


# --- collections -------------------------------------------------------------------------------------


def test_upsert_collection_inserts_then_updates_metadata(db: Conn) -> None:
    # Given a contract seen for the first time
    metadata = CollectionMetadata(
        contract_address=address(0xAB), name="Doges", symbol="DOGE", token_type="ERC721", total_supply=2**70
    )
    # When it is upserted, then read back
    inserted = upsert_collection(conn=db, metadata=metadata)
    read = get_collection(conn=db, address=address(0xAB))
    # Then every field round-trips and ingestion starts pending
    assert read == inserted
    assert (read.name, read.symbol, read.token_type, read.total_supply) == ("Doges", "DOGE", "ERC721", str(2**70))
    assert (read.ingestion_state, read.nfts_indexed, read.owners_indexed, read.verified) == ("pending", 0, 0, False)

    # When the upstream later says more, the same row is updated
    updated = upsert_collection(
        conn=db,
        metadata=CollectionMetadata(
            contract_address=address(0xAB), name="Doges v2", image_url="https://img/x.png", verified=True
        ),
    )
    assert updated.id == inserted.id
    assert (updated.name, updated.image_url, updated.verified, updated.symbol) == (
        "Doges v2",
        "https://img/x.png",
        True,
        None,
    )
    assert get_collection(conn=db, address=address(0xCD)) is None


def test_upsert_collection_rejects_a_mixed_case_address(db: Conn) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        upsert_collection(conn=db, metadata=CollectionMetadata(contract_address="0x" + "AB" * 20))


def test_ingestion_state_and_refresh_stamps(db: Conn) -> None:
    collection_id = new_collection(db)
    running = set_ingestion_state(conn=db, collection_id=collection_id, state="running")
    assert running is not None
    assert running.ingestion_started_at is not None
    assert running.ingestion_finished_at is None
    progress = set_ingestion_state(conn=db, collection_id=collection_id, state="running", nfts_indexed=10)
    assert progress is not None
    assert (progress.nfts_indexed, progress.ingestion_started_at) == (10, running.ingestion_started_at)
    failed = set_ingestion_state(conn=db, collection_id=collection_id, state="failed", error="upstream 503")
    assert failed is not None
    assert failed.ingestion_finished_at is not None
    assert (failed.ingestion_error, failed.nfts_indexed) == ("upstream 503", 10)
    done = set_ingestion_state(
        conn=db, collection_id=collection_id, state="complete", nfts_indexed=20, owners_indexed=15
    )
    assert done is not None
    assert (done.ingestion_state, done.ingestion_error, done.nfts_indexed, done.owners_indexed) == (
        "complete",
        None,
        20,
        15,
    )
    assert set_ingestion_state(conn=db, collection_id=uuid.uuid4(), state="queued") is None

    until = mark_refresh(conn=db, collection_id=collection_id, cooldown_seconds=300)
    assert until is not None
    assert timedelta(seconds=290) < until - datetime.now(UTC) <= timedelta(seconds=300)
    row = get_collection(conn=db, address=address(0xC0))
    assert row is not None
    assert (row.refresh_cooldown_until, row.last_refresh_at is not None) == (until, True)


# --- pages -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [1, 7, 50, 100])
def test_page_numbers_equal_offset_order_at_every_depth(db: Conn, catalogue: Catalogue, page_size: int) -> None:
    # Given 5000 tokens with gaps and ids beyond 2**64, ingested out of order
    total = len(catalogue.ordered)
    last_page = (total - 1) // page_size
    for page in sorted({0, 1, 2, last_page // 2, last_page - 1, last_page, last_page + 1, last_page + 50}):
        # When a page is read by number
        result = get_nft_page(conn=db, collection_id=catalogue.collection_id, page=page, page_size=page_size)
        # Then it holds exactly the rows OFFSET ordering gives, and the paging facts agree
        assert [nft.token_id for nft in result.nfts] == naive_page(
            db, catalogue.collection_id, page * page_size, page_size
        )
        assert result.total == total
        assert result.has_more == ((page + 1) * page_size < total)
        assert result.next_cursor_token_id == (ids(result)[-1] if result.has_more else None)


def test_page_rows_carry_what_was_ingested(db: Conn, catalogue: Catalogue) -> None:
    huge = max(catalogue.ordered)
    assert huge > 2**255
    page = get_nft_page(
        conn=db, collection_id=catalogue.collection_id, page=0, page_size=1, after_token_id=catalogue.ordered[-2]
    )
    (nft,) = page.nfts
    assert nft.token_id == str(huge)
    assert (nft.title, nft.image_url, nft.thumbnail_url) == (
        f"Token #{huge}",
        f"https://img.example/{huge}.png",
        f"https://img.example/{huge}_t.png",
    )
    assert nft.attributes == catalogue.attributes[huge]

    detail = get_nft(conn=db, collection_id=catalogue.collection_id, token_id=huge)
    assert detail is not None
    assert detail.metadata == {"name": f"Token #{huge}", "attributes": catalogue.attributes[huge]}
    assert detail.metadata_error is None


def test_get_nft_of_an_unknown_token_is_none(db: Conn, catalogue: Catalogue) -> None:
    missing = next(t for t in range(10**6) if t not in catalogue.attributes)
    assert get_nft(conn=db, collection_id=catalogue.collection_id, token_id=missing) is None


def test_cursor_pagination_walks_the_collection_exactly_once(db: Conn, catalogue: Catalogue) -> None:
    assert walk(db, catalogue.collection_id, 97, {}) == catalogue.ordered


def test_pages_before_ranks_are_assigned_fall_back_to_the_same_answer(db: Conn) -> None:
    # Given tokens written without ranks (a bulk load that ranks at the end)
    collection_id = new_collection(db)
    tokens = token_ids(500, seed=3)
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(t, []) for t in tokens], rank=False)
    # Then pages (by number and by cursor) are still exact, with the exact total
    expected = sorted(tokens)
    page = get_nft_page(conn=db, collection_id=collection_id, page=3, page_size=40)
    assert ids(page) == expected[120:160]
    assert (page.total, page.has_more) == (500, True)
    assert walk(db, collection_id, 64, {}) == expected


# --- filters and traits ------------------------------------------------------------------------------

filters_strategy = st.dictionaries(
    keys=st.sampled_from(sorted(TRAIT_VALUES)),
    values=st.lists(
        st.sampled_from(["blue", "red", "green", "gold", "laser", "sleepy", "wide", "cap", "crown", "x"]),
        min_size=1,
        max_size=4,
    ),
    min_size=1,
    max_size=3,
)


def bitmaps(conn: Conn, collection_id: uuid.UUID) -> tuple[int, int]:
    """(bitmaps built for the collection's current generation, trait values of the collection)."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE ct.positions_generation = g.generation), count(*)"
        " FROM collection_traits AS ct"
        " LEFT JOIN collection_trait_generations AS g ON g.collection_id = ct.collection_id"
        " WHERE ct.collection_id = %s",
        (collection_id,),
    ).fetchone()
    assert row is not None
    return int(str(row[0])), int(str(row[1]))


def make_bitmaps_stale(conn: Conn, collection_id: uuid.UUID) -> None:
    """What every rank or trait writer does: a new generation, so the bitmaps built before are ignored."""
    conn.execute(
        "UPDATE collection_trait_generations SET generation = generation + 1 WHERE collection_id = %s",
        (collection_id,),
    )


def assert_filters_follow(conn: Conn, catalogue: Catalogue, filters: Mapping[str, Sequence[str]]) -> None:
    """Total, a page by number and the cursor walk of ``filters`` equal the model's."""
    expected = catalogue.matching(filters)
    page = get_nft_page(conn=conn, collection_id=catalogue.collection_id, page=1, page_size=7, filters=filters)
    assert (ids(page), page.total) == (expected[7:14], len(expected))
    assert walk(conn, catalogue.collection_id, 50, filters) == expected


@pytest.mark.parametrize("bitmap_state", ["current", "stale"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(filters=filters_strategy, page_size=st.sampled_from([5, 50]), page=st.integers(min_value=0, max_value=30))
def test_filtered_pages_follow_the_python_model(  # noqa: PLR0917 - fixtures and strategies, passed by name
    db: Conn, catalogue: Catalogue, bitmap_state: str, filters: dict[str, list[str]], page_size: int, page: int
) -> None:
    # Given trait bitmaps that are current (the totals come from them) or stale (ignored: exact counts)
    current, values = bitmaps(db, catalogue.collection_id)
    if bitmap_state == "stale" and current:
        make_bitmaps_stale(db, catalogue.collection_id)
        current = 0
    assert (current, values) == ((values, values) if bitmap_state == "current" else (0, values))
    # And a filter: AND across trait types, OR within one
    expected = catalogue.matching(filters)
    # When a page of it is read by number
    result = get_nft_page(
        conn=db, collection_id=catalogue.collection_id, page=page, page_size=page_size, filters=filters
    )
    # Then it is the model's slice, with the model's total
    assert ids(result) == expected[page * page_size : (page + 1) * page_size]
    assert result.total == len(expected)
    assert result.has_more == ((page + 1) * page_size < len(expected))


def test_filtered_cursor_walk_and_edge_filters(db: Conn, catalogue: Catalogue) -> None:
    filters = {"background": ["blue", "gold"], "eyes": ["laser"]}
    assert walk(db, catalogue.collection_id, 13, filters) == catalogue.matching(filters)
    # Many values of one type (passed as an array) and an unknown value
    many = {"background": ["blue", "red", "green", "gold", *[f"v{i}" for i in range(10)]]}
    page = get_nft_page(conn=db, collection_id=catalogue.collection_id, page=2, page_size=20, filters=many)
    assert ids(page) == catalogue.matching(many)[40:60]
    assert page.total == len(catalogue.matching(many))
    nothing = get_nft_page(
        conn=db, collection_id=catalogue.collection_id, page=0, page_size=20, filters={"hat": ["nope"]}
    )
    assert (nothing.nfts, nothing.total, nothing.has_more, nothing.next_cursor_token_id) == ([], 0, False, None)
    empty_type = get_nft_page(conn=db, collection_id=catalogue.collection_id, page=0, page_size=20, filters={"hat": []})
    assert empty_type.total == 0


def test_bitmap_totals_are_used_when_current_and_ignored_when_stale(db: Conn, catalogue: Catalogue) -> None:
    # Given current bitmaps, one per trait value of the collection, each as long as the collection
    filters = {"background": ["blue", "gold"], "eyes": ["laser", "wide"]}
    assert bitmaps(db, catalogue.collection_id) == (VALUES, VALUES)
    lengths = db.execute(
        "SELECT DISTINCT length(positions) FROM collection_traits WHERE collection_id = %s", (catalogue.collection_id,)
    ).fetchall()
    assert lengths == [(len(catalogue.ordered),)]
    assert_filters_follow(db, catalogue, filters)
    # When the bitmaps are wiped but still stamped current, the total comes from them (proof they are read)
    db.execute(
        "UPDATE collection_traits SET positions = positions # positions WHERE collection_id = %s",
        (catalogue.collection_id,),
    )
    wiped = get_nft_page(conn=db, collection_id=catalogue.collection_id, page=0, page_size=5, filters=filters)
    assert wiped.total == 0
    # Then, once the generation moves on, the same wiped bitmaps are ignored: exact totals again
    make_bitmaps_stale(db, catalogue.collection_id)
    assert_filters_follow(db, catalogue, filters)
    # And a rebuild makes them current (and right) again
    assert rebuild_trait_bitmaps(conn=db, collection_id=catalogue.collection_id) == VALUES
    assert rebuild_trait_bitmaps(conn=db, collection_id=catalogue.collection_id) == 0  # already current
    assert bitmaps(db, catalogue.collection_id) == (VALUES, VALUES)
    assert_filters_follow(db, catalogue, filters)


def test_writers_that_change_ranks_or_traits_make_the_bitmaps_stale(db: Conn, catalogue: Catalogue) -> None:
    collection_id = catalogue.collection_id
    filters = {"hat": ["crown"], "eyes": ["sleepy", "laser"]}
    assert bitmaps(db, collection_id) == (VALUES, VALUES)
    # Re-ingesting unchanged tokens changes nothing: the bitmaps stay current
    unchanged = catalogue.ordered[:50]
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(t, catalogue.attributes[t]) for t in unchanged])
    assert bitmaps(db, collection_id) == (VALUES, VALUES)
    # A token whose attributes change: stale, still exact
    changed = catalogue.ordered[10]
    catalogue.attributes[changed] = [{"trait_type": "hat", "value": "crown"}, {"trait_type": "eyes", "value": "laser"}]
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(changed, catalogue.attributes[changed])])
    assert bitmaps(db, collection_id)[0] == 0
    assert_filters_follow(db, catalogue, filters)
    rebuild_traits(conn=db, collection_id=collection_id)
    assert bitmaps(db, collection_id) == (VALUES, VALUES)
    assert_filters_follow(db, catalogue, filters)
    # A renumbering insert (a token below the max, carrying traits): stale, still exact
    low = next(t for t in range(catalogue.ordered[-1]) if t not in catalogue.attributes)
    catalogue.attributes[low] = [{"trait_type": "hat", "value": "crown"}, {"trait_type": "eyes", "value": "sleepy"}]
    catalogue.ordered = sorted(catalogue.attributes)
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(low, catalogue.attributes[low])])
    assert bitmaps(db, collection_id)[0] == 0
    assert_filters_follow(db, catalogue, filters)
    # A renumbering insert of a token without traits (only ranks move): stale too, still exact
    bare = next(t for t in range(catalogue.ordered[-1]) if t not in catalogue.attributes)
    rebuild_traits(conn=db, collection_id=collection_id)
    catalogue.attributes[bare] = []
    catalogue.ordered = sorted(catalogue.attributes)
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(bare, [])])
    assert bitmaps(db, collection_id)[0] == 0
    assert_filters_follow(db, catalogue, filters)
    # Deleted tokens (ranks released, traits cascaded): stale, still exact; unranked rows get no bitmaps
    rebuild_traits(conn=db, collection_id=collection_id)
    gone = set(catalogue.ordered[100:400:3])
    listed = [t for t in catalogue.ordered if t not in gone]
    assert delete_unlisted_nfts(conn=db, collection_id=collection_id, listed_token_ids=listed) == len(gone)
    for token_id in gone:
        del catalogue.attributes[token_id]
    catalogue.ordered = listed
    assert bitmaps(db, collection_id)[0] == 0
    assert_filters_follow(db, catalogue, filters)
    assert rebuild_trait_bitmaps(conn=db, collection_id=collection_id) == 0  # ranks were released
    assert_filters_follow(db, catalogue, filters)
    # The finishing transaction of an ingestion (prune, rank, rebuild) ends with current, right bitmaps
    with db.transaction():
        delete_unlisted_nfts(conn=db, collection_id=collection_id, listed_token_ids=listed)
        assign_positions(conn=db, collection_id=collection_id)
        rebuild_traits(conn=db, collection_id=collection_id)
    current, values = bitmaps(db, collection_id)
    assert current == values > 0
    assert_filters_follow(db, catalogue, filters)
    assert_filters_follow(db, catalogue, {"background": ["red"]})


def test_a_collection_with_unranked_rows_gets_no_bitmaps_and_exact_filters(db: Conn) -> None:
    # Given tokens written without ranks, facets rebuilt before any ranking
    collection_id = new_collection(db)
    rng = random.Random(5)
    attributes = {t: random_attributes(rng) for t in token_ids(600, seed=9)}
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(t, a) for t, a in attributes.items()], rank=False)
    rebuild_traits(conn=db, collection_id=collection_id)
    catalogue = Catalogue(collection_id, attributes)
    # Then no bitmap is built, and filters are exact
    assert bitmaps(db, collection_id) == (0, VALUES)
    assert_filters_follow(db, catalogue, {"background": ["blue", "red"], "hat": ["cap"]})
    # When the collection is ranked: the facets' bitmaps follow on the next rebuild
    assign_positions(conn=db, collection_id=collection_id)
    assert bitmaps(db, collection_id) == (0, VALUES)
    rebuild_traits(conn=db, collection_id=collection_id)
    assert bitmaps(db, collection_id) == (VALUES, VALUES)
    assert_filters_follow(db, catalogue, {"background": ["blue", "red"], "hat": ["cap"]})
    # And a new unranked token with traits makes them stale until ranked and rebuilt
    extra = max(attributes) + 1
    attributes[extra] = [{"trait_type": "hat", "value": "cap"}, {"trait_type": "background", "value": "red"}]
    catalogue.ordered = sorted(attributes)
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(extra, attributes[extra])], rank=False)
    assert bitmaps(db, collection_id)[0] == 0
    assert_filters_follow(db, catalogue, {"background": ["blue", "red"], "hat": ["cap"]})


def test_deleting_a_collection_with_bitmaps_cascades(db: Conn, catalogue: Catalogue) -> None:
    db.execute("DELETE FROM collections WHERE id = %s", (catalogue.collection_id,))
    left = db.execute(
        "SELECT count(*) FROM collection_trait_generations WHERE collection_id = %s", (catalogue.collection_id,)
    ).fetchone()
    assert left == (0,)


def test_trait_facets_match_a_counter(db: Conn, catalogue: Catalogue) -> None:
    counter: Counter[tuple[str, str]] = Counter()
    for attributes in catalogue.attributes.values():
        counter.update({(a["trait_type"], a["value"]) for a in attributes})
    facets = get_traits(conn=db, collection_id=catalogue.collection_id)
    assert facets.total_tokens == len(catalogue.ordered)
    assert [facet.trait_type for facet in facets.traits] == sorted(TRAIT_VALUES)
    for facet in facets.traits:
        listed = [(value.value, value.count) for value in facet.values]
        assert listed == sorted(listed, key=lambda item: (-item[1], item[0]))
        assert dict(listed) == {v: n for (t, v), n in counter.items() if t == facet.trait_type}


def test_traits_of_an_empty_collection(db: Conn) -> None:
    facets = get_traits(conn=db, collection_id=new_collection(db))
    assert (facets.traits, facets.total_tokens) == ([], 0)


def test_reingesting_a_token_replaces_its_traits_and_rebuild_drops_vanished_values(db: Conn) -> None:
    # Given a token with two traits
    collection_id = new_collection(db)
    upsert_nfts(
        conn=db,
        collection_id=collection_id,
        nfts=[
            record(1, [{"trait_type": "hat", "value": "cap"}, {"trait_type": "eyes", "value": "laser"}]),
            record(2, [{"trait_type": "hat", "value": "cap"}]),
        ],
    )
    rebuild_traits(conn=db, collection_id=collection_id)
    # When it is re-ingested with different attributes (and token 2 unchanged)
    written = upsert_nfts(
        conn=db,
        collection_id=collection_id,
        nfts=[
            record(1, [{"trait_type": "hat", "value": "crown"}]),
            record(2, [{"trait_type": "hat", "value": "cap"}]),
            record(2, [{"trait_type": "hat", "value": "cap"}]),  # listed twice: counts once
        ],
    )
    rebuild_traits(conn=db, collection_id=collection_id)
    # Then its trait rows, the facets and the filters follow the new attributes
    assert written == 2
    rows = db.execute(
        "SELECT token_id::int, trait_type, trait_value FROM nft_traits WHERE collection_id = %s ORDER BY 1, 2",
        (collection_id,),
    ).fetchall()
    assert rows == [(1, "hat", "crown"), (2, "hat", "cap")]
    facets = get_traits(conn=db, collection_id=collection_id)
    assert [(f.trait_type, [(v.value, v.count) for v in f.values]) for f in facets.traits] == [
        ("hat", [("cap", 1), ("crown", 1)])
    ]
    assert (
        ids(get_nft_page(conn=db, collection_id=collection_id, page=0, page_size=10, filters={"eyes": ["laser"]})) == []
    )
    nft = get_nft(conn=db, collection_id=collection_id, token_id=1)
    assert nft is not None
    assert nft.attributes == [{"trait_type": "hat", "value": "crown"}]


def test_upsert_nfts_strips_nul_characters(db: Conn) -> None:
    collection_id = new_collection(db)
    upsert_nfts(
        conn=db,
        collection_id=collection_id,
        nfts=[NftRecord(token_id=5, title="bad\x00title", metadata={"k\x00": "v\x00"}, metadata_error="e\x00")],
    )
    nft = get_nft(conn=db, collection_id=collection_id, token_id=5)
    assert nft is not None
    assert (nft.title, nft.metadata, nft.metadata_error, nft.attributes) == ("badtitle", {"k": "v"}, "e", [])


def test_delete_unlisted_nfts_removes_only_unlisted_tokens_of_that_collection(db: Conn) -> None:
    # Given two collections sharing token ids, one token with a trait row, and a huge id
    collection_id, other_id = new_collection(db), new_collection(db, 0xC1)
    tokens = [1, 2, 3, 2**200]
    upsert_nfts(
        conn=db, collection_id=collection_id, nfts=[record(t, [{"trait_type": "hat", "value": "cap"}]) for t in tokens]
    )
    upsert_nfts(conn=db, collection_id=other_id, nfts=[record(t, []) for t in tokens])
    # When the listing no longer holds 2 and 2**200 (and lists 99, which is not stored, twice)
    deleted = delete_unlisted_nfts(conn=db, collection_id=collection_id, listed_token_ids=[3, 1, 99, 99])
    # Then only those two tokens of that collection go, with their trait rows
    assert deleted == 2
    assert ranks(db, collection_id) == [(1, 0), (3, None)]  # the ranks above a deleted token are released
    assert [token for token, _ in ranks(db, other_id)] == tokens
    traits = db.execute(
        "SELECT token_id::int FROM nft_traits WHERE collection_id = %s ORDER BY 1", (collection_id,)
    ).fetchall()
    assert traits == [(1,), (3,)]
    # And a repeat deletes nothing; an empty listing deletes every token of the collection
    assert delete_unlisted_nfts(conn=db, collection_id=collection_id, listed_token_ids=[1, 3]) == 0
    assert delete_unlisted_nfts(conn=db, collection_id=collection_id, listed_token_ids=[]) == 2
    assert ranks(db, collection_id) == []
    assert len(ranks(db, other_id)) == len(tokens)


# --- ranks -------------------------------------------------------------------------------------------


def ranks(conn: Conn, collection_id: uuid.UUID) -> list[tuple[int, int | None]]:
    rows = conn.execute(
        "SELECT token_id::text, position FROM nfts WHERE collection_id = %s ORDER BY nfts.token_id", (collection_id,)
    ).fetchall()
    return [(int(str(token)), position if isinstance(position, int) else None) for token, position in rows]


def assert_dense(conn: Conn, collection_id: uuid.UUID) -> None:
    listed = ranks(conn, collection_id)
    assert [position for _, position in listed] == list(range(len(listed)))


def test_ranks_stay_dense_as_tokens_arrive_above_and_below_the_max(db: Conn) -> None:
    collection_id = new_collection(db)
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(t, []) for t in (10, 20, 30)])
    assert_dense(db, collection_id)
    # Above the max: appended after it, existing ranks untouched
    before = db.execute("SELECT updated_at FROM nfts WHERE collection_id = %s AND token_id = 30", (collection_id,))
    stamp = before.fetchone()
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(t, []) for t in (2**70, 40)])
    assert ranks(db, collection_id) == [(10, 0), (20, 1), (30, 2), (40, 3), (2**70, 4)]
    after = db.execute("SELECT updated_at FROM nfts WHERE collection_id = %s AND token_id = 30", (collection_id,))
    assert after.fetchone() == stamp
    # Below the max: the collection is re-ranked
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(t, []) for t in (0, 25)])
    assert ranks(db, collection_id) == [(0, 0), (10, 1), (20, 2), (25, 3), (30, 4), (40, 5), (2**70, 6)]
    # Re-ingesting known tokens changes no rank
    assert upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(20, [])]) == 1
    assert assign_positions(conn=db, collection_id=collection_id) == 0
    # Deleting tokens releases the ranks above them; the next assignment closes the gap
    db.execute("DELETE FROM nfts WHERE collection_id = %s AND token_id IN (10, 40)", (collection_id,))
    page = get_nft_page(conn=db, collection_id=collection_id, page=1, page_size=2)
    assert (ids(page), page.total) == ([25, 30], 5)
    assert assign_positions(conn=db, collection_id=collection_id) == 4
    assert_dense(db, collection_id)
    page = get_nft_page(conn=db, collection_id=collection_id, page=2, page_size=2)
    assert (ids(page), page.total, page.has_more) == ([2**70], 5, False)


def nfts_rows_written(conn: Conn) -> tuple[int, int]:
    """(inserted, updated) nfts row versions of the current transaction."""
    row = conn.execute("SELECT n_tup_ins, n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'nfts'").fetchone()
    assert row is not None
    return int(str(row[0])), int(str(row[1]))


def test_new_tokens_above_the_max_are_ranked_as_they_are_inserted(db: Conn) -> None:
    # Given a collection loaded in token order, batch by batch (as ingestion does)
    collection_id = new_collection(db)
    rng = random.Random(11)
    with db.transaction():
        for first in (0, 400, 800):
            batch = [record(t, random_attributes(rng)) for t in range(first + 399, first - 1, -1)]
            upsert_nfts(conn=db, collection_id=collection_id, nfts=batch)
        # Then each token row was written once, with its rank: none was inserted and then rewritten
        assert nfts_rows_written(db) == (1200, 0)
    assert_dense(db, collection_id)
    # And a new token below the max still re-ranks the collection (rewriting the ranks that move)
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(2**64, []), record(5000, [])])
    stamp = "SELECT updated_at FROM nfts WHERE collection_id = %s AND token_id = 5000"
    before = db.execute(stamp, (collection_id,)).fetchone()
    with db.transaction():
        upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(1500, []), record(2**65, [])])
        assert nfts_rows_written(db)[1] > 0
    assert_dense(db, collection_id)
    assert ranks(db, collection_id)[-5:] == [(1199, 1199), (1500, 1200), (5000, 1201), (2**64, 1202), (2**65, 1203)]
    # (a new rank is not a change of the token's data: its updated_at stays)
    assert db.execute(stamp, (collection_id,)).fetchone() == before


def test_traits_go_with_their_tokens_without_a_foreign_key(db: Conn) -> None:
    # Given two collections with traits (nft_traits has no foreign key to nfts since migration 0019)
    keys = db.execute(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'nft_traits'::regclass AND contype = 'f'"
    ).fetchone()
    assert keys == (0,)
    collection_id, other_id = new_collection(db), new_collection(db, 0xC1)
    cap = [{"trait_type": "hat", "value": "cap"}, {"trait_type": "eyes", "value": "wide"}]
    for target in (collection_id, other_id):
        upsert_nfts(conn=db, collection_id=target, nfts=[record(t, cap) for t in range(1, 6)])

    def traits(target: uuid.UUID) -> list[int]:
        rows = db.execute(
            "SELECT token_id::int FROM nft_traits WHERE collection_id = %s ORDER BY 1", (target,)
        ).fetchall()
        return [int(str(token)) for (token,) in rows]

    # When tokens are deleted, directly or by deleting their collection
    db.execute("DELETE FROM nfts WHERE collection_id = %s AND token_id IN (2, 4)", (collection_id,))
    assert traits(collection_id) == [1, 1, 3, 3, 5, 5]
    db.execute("DELETE FROM collections WHERE id = %s", (collection_id,))
    # Then their trait rows went with them, and only theirs
    assert traits(collection_id) == []
    assert traits(other_id) == [t for t in range(1, 6) for _ in cap]
    # And emptying the tables (TRUNCATE ... CASCADE fires no delete trigger) empties nft_traits too;
    # inside a transaction rolled back, so the other tests' rows stay
    with db.transaction(force_rollback=True):
        db.execute("TRUNCATE collections CASCADE")
        assert db.execute("SELECT count(*) FROM nft_traits").fetchone() == (0,)
    assert traits(other_id) == [t for t in range(1, 6) for _ in cap]


def test_concurrent_writers_of_the_same_new_tokens_leave_one_set_of_traits(db: Conn, db_url: str) -> None:
    # Given two writers storing the same new tokens at once, with different attributes
    collection_id = new_collection(db)
    tokens = range(300)
    versions = [
        [record(t, [{"trait_type": "hat", "value": "cap"}, {"trait_type": "hat", "value": "cap"}]) for t in tokens],
        [record(t, [{"trait_type": "hat", "value": "crown"}]) for t in tokens],
    ]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(records: list[NftRecord]) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                start.wait()
                upsert_nfts(conn=conn, collection_id=collection_id, nfts=records)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    writers = [threading.Thread(target=write, args=(records,)) for records in versions]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    # Then both succeed, and every token's trait rows are exactly those of the attributes it holds
    assert errors == []
    rows = db.execute(
        "SELECT n.token_id::int, n.attributes -> 0 ->> 'value', array_agg(t.trait_value ORDER BY t.trait_value)"
        " FROM nfts AS n JOIN nft_traits AS t USING (collection_id, token_id)"
        " WHERE n.collection_id = %s GROUP BY 1, 2",
        (collection_id,),
    ).fetchall()
    assert len(rows) == len(tokens)
    assert all(values == [held] for _, held, values in rows)
    assert_dense(db, collection_id)


# --- owners ------------------------------------------------------------------------------------------

ALICE, BOB, CAROL = address(0xA11CE), address(0xB0B), address(0xCA401)


def owner_rows(conn: Conn, collection_id: uuid.UUID) -> set[tuple[int, str, int]]:
    rows = conn.execute(
        "SELECT token_id::text, owner_address, balance::text FROM nft_ownership WHERE collection_id = %s",
        (collection_id,),
    ).fetchall()
    return {(int(str(t)), str(o), int(str(b))) for t, o, b in rows}


def assert_consistent(conn: Conn) -> None:
    report = check_summaries(conn=conn)
    assert report.ok, report.differences


def test_replace_collection_owners_moves_erc721_tokens_between_wallets(db: Conn) -> None:
    # Given an ERC-721 collection whose tokens belong to Alice and Bob
    collection_id = new_collection(db)
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(t, []) for t in range(1, 7)])
    first = replace_collection_owners(
        conn=db, collection_id=collection_id, owners=[(ALICE, t, 1) for t in (1, 2, 3)] + [(BOB, t, 1) for t in (4, 5)]
    )
    assert (first.deleted, first.held) == (0, 5)
    assert_consistent(db)
    # When a sync says 3 moved to Bob, 5 to Carol, 4 was burned and 6 minted to Carol (a duplicate row too)
    second = replace_collection_owners(
        conn=db,
        collection_id=collection_id,
        owners=[(ALICE, 1, 1), (ALICE, 2, 1), (BOB, 3, 1), (CAROL, 5, 1), (CAROL, 6, 1), (CAROL, 6, 1)],
    )
    # Then every token has exactly its one new owner row and the summaries agree
    assert owner_rows(db, collection_id) == {(1, ALICE, 1), (2, ALICE, 1), (3, BOB, 1), (5, CAROL, 1), (6, CAROL, 1)}
    assert (second.deleted, second.held) == (3, 5)
    assert_consistent(db)
    summary = db.execute(
        "SELECT owner_address, token_count FROM user_collections WHERE collection_id = %s ORDER BY 1", (collection_id,)
    ).fetchall()
    assert sorted(summary) == sorted([(ALICE, 2), (BOB, 1), (CAROL, 2)])


def test_replace_collection_owners_refuses_two_owners_of_an_erc721_token(db: Conn) -> None:
    collection_id = new_collection(db)
    replace_collection_owners(conn=db, collection_id=collection_id, owners=[(ALICE, 1, 1)])
    with pytest.raises(ValueError, match="more than one owner"):
        replace_collection_owners(conn=db, collection_id=collection_id, owners=[(ALICE, 1, 1), (BOB, 1, 1)])
    assert owner_rows(db, collection_id) == {(1, ALICE, 1)}
    assert_consistent(db)


def test_replace_collection_owners_of_erc1155_balances(db: Conn) -> None:
    collection_id = new_collection(db, 0x1155, "ERC1155")
    replace_collection_owners(
        conn=db, collection_id=collection_id, owners=[(ALICE, 1, 5), (BOB, 1, 2**80), (BOB, 2, 1)]
    )
    replace_collection_owners(
        conn=db, collection_id=collection_id, owners=[(ALICE, 1, 3), (BOB, 1, 2**80), (BOB, 2, 0)]
    )
    assert owner_rows(db, collection_id) == {(1, ALICE, 3), (1, BOB, 2**80)}
    assert_consistent(db)
    owners = get_token_owners(conn=db, collection_id=collection_id, token_id=1)
    assert [(o.owner_address, o.balance) for o in owners] == [(BOB, str(2**80)), (ALICE, "3")]


def test_replace_collection_owners_counts_a_repeated_pair_once_with_its_largest_balance(db: Conn) -> None:
    erc1155 = new_collection(db, 0x1155, "ERC1155")
    replaced = replace_collection_owners(
        conn=db, collection_id=erc1155, owners=[(ALICE, 1, 2), (ALICE, 1, 9), (ALICE, 1, 4), (BOB, 1, 0), (BOB, 2, -1)]
    )
    assert (replaced.deleted, replaced.held) == (0, 1)
    assert owner_rows(db, erc1155) == {(1, ALICE, 9)}
    # An ERC-721 balance is always stored as 1, whatever the listing says
    erc721 = new_collection(db)
    replace_collection_owners(conn=db, collection_id=erc721, owners=[(ALICE, 1, 3), (ALICE, 1, 1), (BOB, 2, 5)])
    assert owner_rows(db, erc721) == {(1, ALICE, 1), (2, BOB, 1)}
    assert_consistent(db)


def test_a_bulk_owner_sync_of_many_rows_stays_consistent(db: Conn) -> None:
    collection_id = new_collection(db)
    wallets = [address(0x1000 + i) for i in range(50)]
    rng = random.Random(5)
    for _ in range(3):
        owners = [(rng.choice(wallets), t, 1) for t in range(5000) if rng.random() < 0.9]
        replace_collection_owners(conn=db, collection_id=collection_id, owners=owners)
        assert owner_rows(db, collection_id) == {(t, o, 1) for o, t, _ in owners}
        assert_consistent(db)


def test_set_token_owners_replaces_the_owners_of_one_token(db: Conn) -> None:
    collection_id = new_collection(db, 0x1155, "ERC1155")
    replace_collection_owners(conn=db, collection_id=collection_id, owners=[(ALICE, 7, 2), (BOB, 7, 1), (BOB, 8, 1)])
    db.execute("UPDATE nft_ownership SET last_verified_at = now() - interval '1 day'")
    before = datetime.now(UTC)
    stored = set_token_owners(conn=db, collection_id=collection_id, token_id=7, owners=[(BOB, 4), (CAROL, 1)])
    assert [(o.owner_address, o.balance) for o in stored] == [(BOB, "4"), (CAROL, "1")]
    assert all(o.last_verified_at >= before - timedelta(seconds=5) for o in stored)
    assert get_token_owners(conn=db, collection_id=collection_id, token_id=7) == stored
    assert owner_rows(db, collection_id) == {(7, BOB, 4), (7, CAROL, 1), (8, BOB, 1)}
    assert_consistent(db)
    # A burn: no owners left
    assert set_token_owners(conn=db, collection_id=collection_id, token_id=7, owners=[]) == []
    assert get_token_owners(conn=db, collection_id=collection_id, token_id=7) == []
    assert_consistent(db)


def test_set_token_owners_transfers_an_erc721_token(db: Conn) -> None:
    collection_id = new_collection(db)
    set_token_owners(conn=db, collection_id=collection_id, token_id=2**100, owners=[(ALICE, 1)])
    moved = set_token_owners(conn=db, collection_id=collection_id, token_id=2**100, owners=[(BOB, 1)])
    assert [o.owner_address for o in moved] == [BOB]
    assert owner_rows(db, collection_id) == {(2**100, BOB, 1)}
    assert_consistent(db)
    with pytest.raises(ValueError, match="ERC-721"):
        set_token_owners(conn=db, collection_id=collection_id, token_id=2**100, owners=[(ALICE, 1), (CAROL, 1)])


def test_owned_tokens_are_paged_in_token_order(db: Conn) -> None:
    # Given Alice holding 23 tokens (one of which was never ingested) and Bob the rest
    collection_id = new_collection(db)
    upsert_nfts(conn=db, collection_id=collection_id, nfts=[record(t, []) for t in range(0, 100)])
    alice_tokens = sorted([*range(0, 100, 5), 2**64, 2**64 + 1, 10**40])
    replace_collection_owners(
        conn=db,
        collection_id=collection_id,
        owners=[(ALICE if t in alice_tokens else BOB, t, 1) for t in sorted({*range(100), *alice_tokens})],
    )
    # When her tokens are read page by page, and by cursor
    pages = [
        get_owned_tokens(conn=db, collection_id=collection_id, owner=ALICE, page=p, page_size=10) for p in range(3)
    ]
    # Then they come in token order with the exact total
    assert [t for page in pages for t in ids(page)] == alice_tokens
    assert [(page.total, page.has_more) for page in pages] == [(23, True), (23, True), (23, False)]
    unknown = pages[2].nfts[-1]
    assert (unknown.token_id, unknown.title, unknown.attributes) == (str(10**40), None, [])
    assert pages[0].nfts[1].title == "Token #5"
    after = get_owned_tokens(conn=db, collection_id=collection_id, owner=ALICE, page=0, page_size=3, after_token_id=95)
    assert (ids(after), after.has_more) == ([2**64, 2**64 + 1, 10**40], False)
    nobody = get_owned_tokens(conn=db, collection_id=collection_id, owner=CAROL, page=0, page_size=10)
    assert (nobody.nfts, nobody.total, nobody.has_more) == ([], 0, False)


def test_bad_paging_arguments_are_refused(db: Conn) -> None:
    with pytest.raises(ValueError, match="page"):
        get_nft_page(conn=db, collection_id=uuid.uuid4(), page=-1, page_size=10)
    with pytest.raises(ValueError, match="page"):
        get_owned_tokens(conn=db, collection_id=uuid.uuid4(), owner=ALICE, page=0, page_size=0)


# --- plans -------------------------------------------------------------------------------------------


@pytest.fixture
def big_collection(db: Conn) -> uuid.UUID:
    """100k tokens (ids 0, 3, 6, …) built with generate_series and ranked by assign_positions."""
    collection_id = new_collection(db, 0xB16)
    # No autovacuum ANALYZE racing the test: "fresh statistics" must mean none, whatever the machine's load.
    db.execute("ALTER TABLE nfts SET (autovacuum_enabled = false)")
    db.execute(
        "INSERT INTO nfts (collection_id, token_id, title, attributes)"
        " SELECT %s, g * 3, 'Token #' || g * 3, '[]'::jsonb FROM generate_series(0, 99999) AS g",
        (collection_id,),
    )
    assert assign_positions(conn=db, collection_id=collection_id) == 100_000
    return collection_id


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def executed_plan(conn: Conn, sql: str, params: Mapping[str, object]) -> list[dict[str, Any]]:
    row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()
    assert row is not None
    document: Any = row[0]
    return list(plan_nodes(document[0]["Plan"]))


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh-statistics", "analyzed"])
def test_a_deep_page_is_an_index_range_scan(db: Conn, big_collection: uuid.UUID, analyzed: bool) -> None:
    from such_market.collections import queries

    if analyzed:
        db.execute("ANALYZE nfts")
    # Given a 100k-token collection, when page 1900 (rows 95000..95049) is planned and run
    params = {"collection_id": big_collection, "first": 95_000, "size": 50}
    nodes = executed_plan(db, queries._PAGE_BY_POSITION, params)
    # Then the rows come from the rank index, and no node reads more than the page
    scans = [node for node in nodes if node.get("Relation Name") == "nfts"]
    assert all("Seq Scan" not in node["Node Type"] for node in nodes)
    assert any(node.get("Index Name") == "nfts_collection_position_key" and node["Actual Rows"] == 50 for node in scans)
    assert max(node["Actual Rows"] * node.get("Actual Loops", 1) for node in nodes) <= 50
    # And the page itself is the expected one
    page = get_nft_page(conn=db, collection_id=big_collection, page=1900, page_size=50)
    assert ids(page) == [3 * i for i in range(95_000, 95_050)]
    assert (page.total, page.has_more) == (100_000, True)


def test_a_cursor_page_is_an_index_range_scan(db: Conn, big_collection: uuid.UUID) -> None:
    from such_market.collections import queries

    nodes = executed_plan(db, queries._PAGE_AFTER, {"collection_id": big_collection, "after": 285_000, "limit": 51})
    assert all("Seq Scan" not in node["Node Type"] for node in nodes)
    assert max(node["Actual Rows"] * node.get("Actual Loops", 1) for node in nodes) <= 51
    page = get_nft_page(conn=db, collection_id=big_collection, page=0, page_size=50, after_token_id=285_000)
    assert ids(page) == [3 * i for i in range(95_001, 95_051)]


def test_a_resync_rewrites_only_changed_rows_and_marks_the_rest_verified(db: Conn) -> None:
    # Given an ERC-1155 collection synced a day ago
    collection_id = new_collection(db, 0x1155, "ERC1155")
    replace_collection_owners(conn=db, collection_id=collection_id, owners=[(ALICE, 1, 5), (BOB, 1, 2), (BOB, 2, 1)])
    db.execute("UPDATE nft_ownership SET last_verified_at = now() - interval '1 day'")
    db.execute("UPDATE collection_owner_syncs SET verified_at = now() - interval '1 day'")
    tuples = dict(
        db.execute(
            "SELECT owner_address || ':' || token_id::text, ctid::text FROM nft_ownership WHERE collection_id = %s",
            (collection_id,),
        ).fetchall()
    )
    # When a resync changes one balance and keeps the rest
    before = datetime.now(UTC)
    result = replace_collection_owners(
        conn=db, collection_id=collection_id, owners=[(ALICE, 1, 5), (BOB, 1, 3), (BOB, 2, 1)]
    )
    assert (result.deleted, result.held) == (0, 3)
    # Then only the changed row got a new tuple; the others are untouched (no rewrite, same row stamp)
    after = dict(
        db.execute(
            "SELECT owner_address || ':' || token_id::text, ctid::text FROM nft_ownership WHERE collection_id = %s",
            (collection_id,),
        ).fetchall()
    )
    assert after[f"{ALICE}:1"] == tuples[f"{ALICE}:1"]
    assert after[f"{BOB}:2"] == tuples[f"{BOB}:2"]
    assert after[f"{BOB}:1"] != tuples[f"{BOB}:1"]
    assert owner_rows(db, collection_id) == {(1, ALICE, 5), (1, BOB, 3), (2, BOB, 1)}
    assert_consistent(db)
    # And every owner reads as verified now, through the collection's sync watermark
    for token in (1, 2):
        owners = get_token_owners(conn=db, collection_id=collection_id, token_id=token)
        assert owners
        assert all(o.last_verified_at >= before - timedelta(seconds=5) for o in owners)


def test_single_owner_is_set_by_the_writers_and_corrected_for_any_other_insert(db: Conn) -> None:
    erc721 = new_collection(db)
    erc1155 = new_collection(db, 0x1155, "ERC1155")
    replace_collection_owners(conn=db, collection_id=erc721, owners=[(ALICE, 1, 1)])
    set_token_owners(conn=db, collection_id=erc721, token_id=2, owners=[(BOB, 1)])
    replace_collection_owners(conn=db, collection_id=erc1155, owners=[(ALICE, 1, 3)])
    # A writer that sets the flag wrongly (or not at all) is corrected in the same statement
    db.execute(
        "INSERT INTO nft_ownership (collection_id, token_id, owner_address, single_owner) VALUES (%s, 3, %s, false),"
        " (%s, 2, %s, true)",
        (erc721, CAROL, erc1155, CAROL),
    )
    db.execute("INSERT INTO nft_ownership (collection_id, token_id, owner_address) VALUES (%s, 4, %s)", (erc721, CAROL))
    flags = db.execute(
        "SELECT collection_id = %s, token_id::int, single_owner FROM nft_ownership ORDER BY 1 DESC, 2, owner_address",
        (erc721,),
    ).fetchall()
    assert flags == [(True, t, True) for t in (1, 2, 3, 4)] + [(False, 1, False), (False, 2, False)]
    # And a second owner row of an ERC-721 token still fails in its statement
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "INSERT INTO nft_ownership (collection_id, token_id, owner_address) VALUES (%s, 1, %s)", (erc721, BOB)
        )
    assert_consistent(db)
