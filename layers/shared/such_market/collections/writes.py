"""Set-based writers of collection data: metadata, NFTs and their traits, ranks, owners, ingestion state.

Every writer is keyword-only, takes an autocommit psycopg connection and opens its own
``conn.transaction()`` (a savepoint when the caller already holds one, so a caller can group several
writers with its outbox event). Batches go through ``COPY`` into a temporary table and are applied with a
few single statements, never row by row: ``nft_ownership`` carries statement-level summary triggers
(migration 0003), which then run once per statement over the whole batch.

Ranks (``nfts.position``, migration 0007) are kept by ``assign_positions``; ``upsert_nfts`` appends the
ranks of new tokens as it inserts them when they all lie above the highest ranked one, and calls
``assign_positions`` for the rest unless told not to, so the page-number read path stays a range scan.
Rarity ranks (migration 0016) are kept by ``rank_rarity``, which ``upsert_nfts`` calls in the same way
when tokens or their traits change (ingestion passes ``rarity=False`` and ranks once at its finish). Trait
bitmaps (migration 0010) are built by ``rebuild_traits`` (``rebuild_trait_bitmaps``) for a fully ranked
collection; every writer that changes ranks or ``nft_traits`` bumps the collection's generation in its own
transaction, which makes the bitmaps built before it ignored by readers until the next ``rebuild_traits``.
Lock order, to keep writers of one collection from deadlocking: the ranking advisory lock, then rows, then
the generation row. Addresses are expected lower-case (the callers validate them; the table constraints
reject anything else); token ids and balances are Python ints stored as ``numeric(78,0)``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson

from such_market.collections.queries import COLLECTION_COLUMNS, CollectionRow, TokenOwner, collection_row
from such_market.collections.rarity import rank_holders
from such_market.observability import logger

if TYPE_CHECKING:
    import psycopg

    Connection = psycopg.Connection[tuple[Any, ...]]

IngestionState = Literal["pending", "queued", "running", "complete", "failed"]

# Advisory lock class of "ranking this collection" (the object id is a hash of the collection id).
_POSITIONS_LOCK_CLASS = 0x5C4D_0007


@dataclass(frozen=True, slots=True)
class CollectionMetadata:
    """What the upstream says about a contract (``total_supply`` None when it did not say)."""

    contract_address: str
    name: str | None = None
    symbol: str | None = None
    token_type: Literal["ERC721", "ERC1155", "UNKNOWN"] = "UNKNOWN"
    total_supply: int | None = None
    image_url: str | None = None
    description: str | None = None
    verified: bool = False
    is_spam: bool = False


@dataclass(frozen=True, slots=True)
class NftRecord:
    """One token as ingestion stores it; ``attributes`` are already normalized to
    ``{"trait_type": ..., "value": ...}`` and become the token's ``nft_traits`` rows."""

    token_id: int
    title: str | None = None
    description: str | None = None
    image_url: str | None = None
    thumbnail_url: str | None = None
    metadata: dict[str, Any] | None = None
    attributes: list[dict[str, str]] = field(default_factory=list)
    metadata_error: str | None = None


@dataclass(frozen=True, slots=True)
class OwnersReplaced:
    """What ``replace_collection_owners`` did: ``deleted`` rows removed, ``held`` rows now held (each one
    inserted or re-verified)."""

    deleted: int
    held: int


_UPSERT_COLLECTION = f"""
INSERT INTO collections AS c
    (contract_address, name, symbol, token_type, total_supply, image_url, description, verified, is_spam)
VALUES (%(contract_address)s, %(name)s, %(symbol)s, %(token_type)s, %(total_supply)s::numeric, %(image_url)s,
        %(description)s, %(verified)s, %(is_spam)s)
ON CONFLICT (contract_address) DO UPDATE
SET name = excluded.name, symbol = excluded.symbol, token_type = excluded.token_type,
    total_supply = excluded.total_supply, image_url = excluded.image_url, description = excluded.description,
    verified = excluded.verified, is_spam = excluded.is_spam
RETURNING {COLLECTION_COLUMNS}
"""  # noqa: S608

# A fresh batch table per call: dropped first in case an enclosing transaction already made one.
_NFT_BATCH = """
DROP TABLE IF EXISTS pg_temp.nft_batch;
CREATE TEMP TABLE nft_batch (
    token_id       numeric(78, 0) NOT NULL,
    title          text,
    description    text,
    image_url      text,
    thumbnail_url  text,
    metadata       jsonb,
    attributes     jsonb,
    metadata_error text,
    stale_traits   boolean
) ON COMMIT DROP
"""

_COPY_NFTS = """
COPY nft_batch (token_id, title, description, image_url, thumbnail_url, metadata, attributes, metadata_error)
FROM STDIN
"""

# Tokens new to the collection (stale_traits NULL: no row when the batch was marked) are plainly inserted,
# without ON CONFLICT (PostgreSQL's speculative insertion costs about a third of an insert): upsert_nfts
# holds the collection's ranking lock, which every writer that inserts nfts rows takes first, so none can
# have appeared since. Each takes its token-order rank here when %(base)s is given (_APPEND_STATE: every
# new token of the batch lies above the highest ranked one), so that the row is written once, not
# inserted and then rewritten with its rank.
_INSERT_NEW_NFTS = """
INSERT INTO nfts
    (collection_id, token_id, title, description, image_url, thumbnail_url, metadata, attributes, metadata_error,
     position)
SELECT %(collection_id)s, token_id, title, description, image_url, thumbnail_url, metadata, attributes,
       metadata_error, %(base)s::integer + row_number() OVER (ORDER BY token_id) - 1
FROM nft_batch
WHERE stale_traits IS NULL
ORDER BY token_id
"""

# Stored tokens: rows that did not change are left alone (no new tuple, no updated_at bump); ranks are not
# touched. (An upsert onto the primary key rather than an UPDATE ... FROM join: see the note below.)
_UPDATE_NFTS = """
INSERT INTO nfts AS n
    (collection_id, token_id, title, description, image_url, thumbnail_url, metadata, attributes, metadata_error)
SELECT %(collection_id)s, token_id, title, description, image_url, thumbnail_url, metadata, attributes,
       metadata_error
FROM nft_batch
WHERE stale_traits IS NOT NULL
ORDER BY token_id
ON CONFLICT (collection_id, token_id) DO UPDATE
SET title = excluded.title, description = excluded.description, image_url = excluded.image_url,
    thumbnail_url = excluded.thumbnail_url, metadata = excluded.metadata, attributes = excluded.attributes,
    metadata_error = excluded.metadata_error
WHERE (n.title, n.description, n.image_url, n.thumbnail_url, n.metadata, n.attributes, n.metadata_error)
      IS DISTINCT FROM
      (excluded.title, excluded.description, excluded.image_url, excluded.thumbnail_url, excluded.metadata,
       excluded.attributes, excluded.metadata_error)
"""

# The first rank the batch's new tokens can take (NULL when they cannot simply be appended: some token of
# the collection is unranked, a new one falls below the highest ranked one, or no token is new;
# assign_positions then ranks them).
_APPEND_STATE = """
SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM nfts WHERE collection_id = %(collection_id)s AND position IS NULL)
             AND new.first_token > coalesce(last.token_id, -1)
            THEN coalesce(last.position + 1, 0) END
FROM (SELECT min(token_id) AS first_token FROM nft_batch WHERE stale_traits IS NULL) AS new
LEFT JOIN LATERAL (
    SELECT position, token_id FROM nfts
    WHERE collection_id = %(collection_id)s AND position IS NOT NULL
    ORDER BY position DESC LIMIT 1
) AS last ON true
"""

# The statements below never join the batch against a big table: the planner's estimates for a collection
# that is being loaded are stale (often "1 row"), and a misjudged nested loop there turns quadratic. They
# probe by primary key per batch row (a correlated subquery) or pass the batch as an array instead.
#
# A batch token's nft_traits rows are derived from its stored attributes, so they are rewritten only for
# tokens whose attributes change (stale_traits true) or that are new (NULL); unchanged tokens cost nothing.
# Only tokens up to the collection's highest stored one are probed: those above it are new (an ingestion
# in token order probes nothing).
_MARK_STALE_TRAITS = """
UPDATE nft_batch AS b
SET stale_traits = (
    SELECT n.attributes IS DISTINCT FROM b.attributes
    FROM nfts AS n
    WHERE n.collection_id = %(collection_id)s AND n.token_id = b.token_id
)
WHERE b.token_id <= (SELECT max(token_id) FROM nfts WHERE collection_id = %(collection_id)s)
"""

# A token new to the collection's ranking (new, or listed without metadata until now) or whose attributes
# change, in a collection that an ingestion has completed: its rarity ranks must be computed again. A
# collection never indexed holds a partial listing (pages a reader fetched from Alchemy): it is ranked
# when its first ingestion finishes, not on every page read before. (LIMIT 1: whether any exists.)
_NEW_OR_CHANGED_ATTRIBUTES = """
SELECT 1 FROM nft_batch
WHERE stale_traits IS NOT FALSE
  AND EXISTS (SELECT 1 FROM collections WHERE id = %(collection_id)s AND ingestion_completed_at IS NOT NULL)
LIMIT 1
"""

_DELETE_STALE_TRAITS = """
DELETE FROM nft_traits
WHERE collection_id = %(collection_id)s
  AND token_id = ANY (ARRAY(SELECT token_id FROM nft_batch WHERE stale_traits))
"""

# A plain INSERT, neither ON CONFLICT (PostgreSQL's speculative insertion costs about a third of the
# statement) nor a foreign key to nfts (migration 0019): the rows cannot exist yet. upsert_nfts is their
# only writer and holds the collection's ranking lock from before it marks the batch, so the tokens it
# writes traits for have none: the changed ones' were deleted just above, and the new ones had no nfts row
# (and a token's traits go with its row: 0019's delete trigger). DISTINCT: a pair listed twice for a token.
_INSERT_TRAITS = """
INSERT INTO nft_traits (collection_id, token_id, trait_type, trait_value)
SELECT DISTINCT %(collection_id)s::uuid, b.token_id, a.attr ->> 'trait_type', a.attr ->> 'value'
FROM nft_batch AS b
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(b.attributes) = 'array' THEN b.attributes ELSE '[]'::jsonb END
) AS a(attr)
WHERE b.stale_traits IS NOT FALSE
  AND jsonb_typeof(a.attr) = 'object'
  AND a.attr ->> 'trait_type' IS NOT NULL AND a.attr ->> 'value' IS NOT NULL
"""

# Tokens of the collection that a complete listing did not return (burned, or never real): an anti-join
# against the listed ids, so the cost is one hash over the listing whatever its size.
_DELETE_UNLISTED_NFTS = """
DELETE FROM nfts AS n
WHERE n.collection_id = %(collection_id)s
  AND NOT EXISTS (SELECT 1 FROM unnest(%(token_ids)s::numeric[]) AS l(token_id) WHERE l.token_id = n.token_id)
"""

# The attributes stay NULL: "listed, metadata never read" (ingestion always writes a list).
_LIST_TOKENS = """
INSERT INTO nfts (collection_id, token_id)
SELECT %(collection_id)s, token_id FROM unnest(%(token_ids)s::numeric[]) AS l(token_id)
ORDER BY token_id
ON CONFLICT (collection_id, token_id) DO NOTHING
RETURNING token_id
"""

_REBUILD_TRAITS = """
WITH vanished AS (
    DELETE FROM collection_traits AS ct
    WHERE ct.collection_id = %(collection_id)s
      AND NOT EXISTS (
          SELECT 1 FROM nft_traits AS t
          WHERE t.collection_id = ct.collection_id AND t.trait_type = ct.trait_type AND t.trait_value = ct.trait_value
      )
)
INSERT INTO collection_traits AS ct (collection_id, trait_type, trait_value, token_count)
SELECT %(collection_id)s, trait_type, trait_value, count(*)::integer
FROM nft_traits
WHERE collection_id = %(collection_id)s
GROUP BY trait_type, trait_value
ON CONFLICT (collection_id, trait_type, trait_value) DO UPDATE
SET token_count = excluded.token_count
WHERE ct.token_count <> excluded.token_count
"""

_LOCK_POSITIONS = "SELECT pg_advisory_xact_lock(%(lock_class)s, hashtext(%(collection_id)s::text))"

# "The collection's ranks or nft_traits changed": bitmaps stamped with an older generation are ignored.
# An upsert, so a bump never misses a generation row that a concurrent bitmap build is inserting (it
# waits for that insert and then increments).
_BUMP_GENERATION = """
INSERT INTO collection_trait_generations AS g (collection_id) VALUES (%(collection_id)s)
ON CONFLICT (collection_id) DO UPDATE SET generation = g.generation + 1
"""

# The bitmap build holds the generation row (a no-op update) for the rest of its transaction, so every
# writer that changes ranks or traits either committed before the build's next statement (its snapshot
# then sees the change and the bump) or bumps after the build commits (the new bitmaps are then stale).
_LOCK_GENERATION = """
INSERT INTO collection_trait_generations AS g (collection_id) VALUES (%(collection_id)s)
ON CONFLICT (collection_id) DO UPDATE SET generation = g.generation
"""

# Set-based build of every value's bitmap, in one statement (its snapshot is the one the stamp is read
# in): the positions of each value's tokens (one hash join, one hash aggregate), then per value 64-bit
# words OR-ed together and rendered as hex, cut to the ranked count. Nothing is written while some token
# is unranked (positions would not be dense 0..k-1), nor when every bitmap is already current.
#
# The hash join is not left to the planner (``_build_bitmaps`` runs it with nested loops disabled): for a
# collection loaded since the tables were last analyzed, the statistics know nothing of its
# collection_id and estimate "1 row" on both sides, and the planner then picks a nested loop whose inner
# side is an index scan on nfts by collection_id alone, i.e. the whole collection once per nft_traits row.
# Measured on the 10,000-token stub collection ingested after the 100,000-token one had been analyzed:
# 56,381 trait rows x 10,000 tokens, still running when the finish's 120 s statement timeout cancelled it
# (the ingestion failed); the hash join takes 40-70 ms there, and 0.1-0.8 s for 100,000 tokens.
_BITMAPS_TEMPLATE = """
WITH state AS (
    SELECT g.generation,
           (SELECT coalesce(max({position}) + 1, 0) FROM nfts WHERE collection_id = %(collection_id)s) AS ranked
    FROM collection_trait_generations AS g
    WHERE g.collection_id = %(collection_id)s
      AND {complete}
      AND ({force} OR EXISTS (
          SELECT 1 FROM collection_traits AS ct
          WHERE ct.collection_id = %(collection_id)s AND ct.{bits}_generation IS DISTINCT FROM g.generation
      ))
),
value_positions AS (
    SELECT t.trait_type, t.trait_value, array_agg(n.{position}) AS positions
    FROM nft_traits AS t
    JOIN nfts AS n ON n.collection_id = t.collection_id AND n.token_id = t.token_id
    WHERE t.collection_id = %(collection_id)s AND n.{position} IS NOT NULL AND EXISTS (SELECT 1 FROM state)
    GROUP BY t.trait_type, t.trait_value
)
UPDATE collection_traits AS ct
SET {bits} = b.bits, {bits}_generation = s.generation
FROM state AS s, value_positions AS v
CROSS JOIN LATERAL (
    SELECT substring(('x' || string_agg(lpad(to_hex(coalesce(w.mask, 0)), 16, '0'), '' ORDER BY g.word))::varbit
                     FROM 1 FOR (SELECT ranked FROM state)) AS bits
    FROM generate_series(0, ((SELECT ranked FROM state) - 1) / 64) AS g(word)
    LEFT JOIN (
        SELECT p / 64 AS word, bit_or(1::bigint << (63 - p % 64)) AS mask
        FROM unnest(v.positions) AS p
        GROUP BY 1
    ) AS w USING (word)
) AS b
WHERE ct.collection_id = %(collection_id)s AND ct.trait_type = v.trait_type AND ct.trait_value = v.trait_value
"""
_REBUILD_BITMAPS = (
    _BITMAPS_TEMPLATE.format(
        position="position",
        bits="positions",
        complete="NOT EXISTS (SELECT 1 FROM nfts WHERE collection_id = %(collection_id)s AND position IS NULL)",
        force="false",
    )
    .replace("%", "%%")
    .replace("%%(collection_id)s", "%(collection_id)s")
)
# The same by rarity place (migration 0016): built by rank_rarity right after it wrote dense places (the
# unread tokens, never placed, carry no traits), and whenever it moved any (%(force)s): rank_rarity is the
# only writer of places and does not bump the generation, so a current stamp alone does not say current.
_REBUILD_RARITY_BITMAPS = (
    _BITMAPS_TEMPLATE.format(position="rarity_position", bits="rarity_positions", complete="true", force="%(force)s")
    .replace("%", "%%")
    .replace("%%(collection_id)s", "%(collection_id)s")
    .replace("%%(force)s", "%(force)s")
)

BITMAP_BUILD_TIMEOUT_MS = 30_000
"""The longest a bitmap build may run (100,000 tokens take well under a second)."""

_CURRENT_PLAN_SETTINGS = "SELECT current_setting('enable_nestloop'), current_setting('statement_timeout')"
# Transaction-local (SET LOCAL): undone with the savepoint when the build is cancelled.
_SET_PLAN_SETTINGS = """
SELECT set_config('enable_nestloop', %(nestloop)s, true), set_config('statement_timeout', %(timeout)s, true)
"""

_POSITION_STATE = """
SELECT (SELECT min(token_id) FROM nfts WHERE collection_id = %(collection_id)s AND position IS NULL),
       last.position, last.token_id
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT position, token_id FROM nfts
    WHERE collection_id = %(collection_id)s AND position IS NOT NULL
    ORDER BY position DESC LIMIT 1
) AS last ON true
"""

# Ranks are written as an upsert onto the primary key rather than an UPDATE ... FROM join, whose plan
# depends on statistics that are stale while a collection loads: each ranked row is one key probe. The
# proposed rows never get inserted (every token exists); only the conflict branch runs.
#
# Every unranked token lies above the highest ranked one: rank them after it, in token order.
_APPEND_POSITIONS = """
INSERT INTO nfts AS n (collection_id, token_id, position)
SELECT %(collection_id)s, token_id, %(base)s + row_number() OVER (ORDER BY token_id) - 1
FROM nfts
WHERE collection_id = %(collection_id)s AND position IS NULL
ON CONFLICT (collection_id, token_id) DO UPDATE SET position = excluded.position
"""

# Some unranked token falls between ranked ones: re-rank the collection, writing only the rows whose rank
# changes (the suffix above the first insertion point). The unique constraint on ranks is DEFERRABLE, so
# the transient collisions of the shift are fine.
_RENUMBER_POSITIONS = """
INSERT INTO nfts AS n (collection_id, token_id, position)
SELECT %(collection_id)s, token_id, row_number() OVER (ORDER BY token_id) - 1
FROM nfts
WHERE collection_id = %(collection_id)s
ON CONFLICT (collection_id, token_id) DO UPDATE SET position = excluded.position
WHERE n.position IS DISTINCT FROM excluded.position
"""

_COLLECTION_TOKEN_TYPE = "SELECT token_type FROM collections WHERE id = %(collection_id)s"

_OWNER_BATCH = """
DROP TABLE IF EXISTS pg_temp.owner_batch;
CREATE TEMP TABLE owner_batch (
    owner_address text NOT NULL,
    token_id      numeric(78, 0) NOT NULL,
    balance       numeric(78, 0) NOT NULL
) ON COMMIT DROP
"""

_COPY_OWNERS = "COPY owner_batch (owner_address, token_id, balance) FROM STDIN"

# The batch holds each (token, owner) once (replace_collection_owners deduplicates it), so both
# statements below are one hash anti-join between the batch and the collection's rows.
_DELETE_ABSENT_OWNERS = """
DELETE FROM nft_ownership AS o
WHERE o.collection_id = %(collection_id)s
  AND NOT EXISTS (
      SELECT 1 FROM owner_batch AS b WHERE b.token_id = o.token_id AND b.owner_address = o.owner_address
  )
"""

# Only rows that are new or whose balance changed are written (stamped now(), single_owner set from the
# collection's token type, migration 0011); a row that already holds the listed balance is left alone: the
# sync's watermark (_STAMP_OWNER_SYNC) records that it was verified now. Rows go in key order, so two
# syncs of one collection lock rows in the same order.
_UPSERT_OWNERS = """
INSERT INTO nft_ownership AS o (collection_id, token_id, owner_address, balance, last_verified_at, single_owner)
SELECT %(collection_id)s, b.token_id, b.owner_address, b.balance, now(), %(single_owner)s
FROM owner_batch AS b
WHERE NOT EXISTS (
    SELECT 1 FROM nft_ownership AS held
    WHERE held.collection_id = %(collection_id)s AND held.token_id = b.token_id
      AND held.owner_address = b.owner_address AND held.balance = b.balance
)
ORDER BY b.token_id, b.owner_address
ON CONFLICT (collection_id, token_id, owner_address) DO UPDATE
SET balance = excluded.balance, last_verified_at = excluded.last_verified_at
WHERE o.balance IS DISTINCT FROM excluded.balance
"""

# "Every row of the collection was verified now" (migration 0011): readers take the later of this and the
# row's own last_verified_at.
_STAMP_OWNER_SYNC = """
INSERT INTO collection_owner_syncs AS s (collection_id, verified_at) VALUES (%(collection_id)s, now())
ON CONFLICT (collection_id) DO UPDATE SET verified_at = excluded.verified_at
"""

_DELETE_TOKEN_OWNERS = """
DELETE FROM nft_ownership
WHERE collection_id = %(collection_id)s AND token_id = %(token_id)s::numeric
  AND owner_address <> ALL(%(owners)s::text[])
"""

_UPSERT_TOKEN_OWNERS = """
INSERT INTO nft_ownership AS o (collection_id, token_id, owner_address, balance, last_verified_at, single_owner)
SELECT %(collection_id)s, %(token_id)s::numeric, h.owner_address, h.balance, now(), %(single_owner)s
FROM unnest(%(owners)s::text[], %(balances)s::numeric[]) AS h(owner_address, balance)
ORDER BY h.owner_address
ON CONFLICT (collection_id, token_id, owner_address) DO UPDATE
SET balance = excluded.balance, last_verified_at = excluded.last_verified_at
RETURNING owner_address, balance::text, last_verified_at
"""

# A run starting (entering 'running') stamps its start and clears the previous finish; a run ending stamps
# its finish; progress updates ('running' again) keep both. The error is replaced when one is given and
# cleared by a successful finish. A completion (migration 0014) stamps ingestion_completed_at and clears the
# attempts and the resume point; queueing or starting a run cancels a pending retry.
_SET_INGESTION_STATE = f"""
UPDATE collections
SET ingestion_state = %(state)s,
    nfts_indexed = coalesce(%(nfts_indexed)s, nfts_indexed),
    owners_indexed = coalesce(%(owners_indexed)s, owners_indexed),
    ingestion_error = CASE WHEN %(error)s::text IS NOT NULL THEN %(error)s::text
                           WHEN %(state)s = 'complete' THEN NULL
                           ELSE ingestion_error END,
    ingestion_started_at = CASE WHEN %(state)s = 'running' AND ingestion_state <> 'running' THEN now()
                                ELSE ingestion_started_at END,
    ingestion_finished_at = CASE WHEN %(state)s IN ('complete', 'failed') THEN now()
                                 WHEN %(state)s = 'running' AND ingestion_state <> 'running' THEN NULL
                                 ELSE ingestion_finished_at END,
    ingestion_completed_at = CASE WHEN %(state)s = 'complete' THEN now() ELSE ingestion_completed_at END,
    ingestion_attempts = CASE WHEN %(state)s = 'complete' THEN 0 ELSE ingestion_attempts END,
    ingestion_retry_at = CASE WHEN %(state)s IN ('complete', 'queued', 'running') THEN NULL
                              ELSE ingestion_retry_at END,
    ingestion_resume_key = CASE WHEN %(state)s = 'complete' THEN NULL ELSE ingestion_resume_key END,
    ingestion_listed_through = CASE WHEN %(state)s = 'complete' THEN NULL ELSE ingestion_listed_through END
WHERE id = %(collection_id)s
RETURNING {COLLECTION_COLUMNS}
"""  # noqa: S608

# Durable progress of a running ingestion (migration 0014): where its token listing goes on, the highest
# token id it has committed, and nfts_indexed as the number of tokens really stored.
_RECORD_INGESTION_PROGRESS = """
UPDATE collections
SET ingestion_resume_key = %(resume_key)s,
    ingestion_listed_through = %(listed_through)s::numeric,
    nfts_indexed = (SELECT count(*) FROM nfts WHERE collection_id = %(collection_id)s)
WHERE id = %(collection_id)s
"""

# A failed run: the counters say what is stored, the attempt is counted, and a retry is scheduled (or not).
_RECORD_INGESTION_FAILURE = f"""
UPDATE collections
SET ingestion_state = 'failed',
    ingestion_error = %(error)s,
    ingestion_finished_at = now(),
    nfts_indexed = (SELECT count(*) FROM nfts WHERE collection_id = %(collection_id)s),
    ingestion_attempts = %(attempts)s,
    ingestion_retry_at = CASE WHEN %(retry_in_seconds)s::float8 IS NULL THEN NULL
                              ELSE now() + make_interval(secs => %(retry_in_seconds)s::float8) END
WHERE id = %(collection_id)s
RETURNING {COLLECTION_COLUMNS}
"""  # noqa: S608

# The failed ingestions whose retry is due, queued again (oldest due first; SKIP LOCKED so two sweeps
# never queue one twice).
_CLAIM_DUE_RETRIES = """
UPDATE collections AS c
SET ingestion_state = 'queued', ingestion_retry_at = NULL
WHERE c.id IN (
    SELECT id FROM collections
    WHERE ingestion_retry_at <= now() AND ingestion_state = 'failed'
    ORDER BY ingestion_retry_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING c.contract_address
"""

_MARK_REFRESH = """
UPDATE collections
SET last_refresh_at = now(), refresh_cooldown_until = now() + make_interval(secs => %(cooldown_seconds)s)
WHERE id = %(collection_id)s
RETURNING refresh_cooldown_until
"""


def upsert_collection(*, conn: Connection, metadata: CollectionMetadata) -> CollectionRow:
    """Insert the collection or overwrite its metadata; ingestion fields are left as they are."""
    params = {
        "contract_address": metadata.contract_address,
        "name": metadata.name,
        "symbol": metadata.symbol,
        "token_type": metadata.token_type,
        "total_supply": None if metadata.total_supply is None else str(metadata.total_supply),
        "image_url": metadata.image_url,
        "description": metadata.description,
        "verified": metadata.verified,
        "is_spam": metadata.is_spam,
    }
    with conn.transaction():
        row = conn.execute(_UPSERT_COLLECTION, params).fetchone()
    assert row is not None  # noqa: S101 - INSERT ... ON CONFLICT DO UPDATE ... RETURNING returns the row
    return collection_row(row)


def upsert_nfts(
    *, conn: Connection, collection_id: uuid.UUID, nfts: Iterable[NftRecord], rank: bool = True, rarity: bool = True
) -> int:
    """Insert or update a batch of tokens and make their ``nft_traits`` rows match their attributes.

    A token listed twice counts once (the last record wins). Returns the number of distinct tokens
    written. ``rank=True`` ranks new tokens in the same transaction: as they are inserted when they all
    lie above the collection's highest ranked one (ingestion in token order, a new mint), otherwise with
    ``assign_positions``; and, unless ``rarity=False``, when tokens were added or their attributes changed
    in a collection an ingestion has completed, the collection's rarity (``rank_rarity``). A bulk load can
    pass ``rarity=False`` (ingestion: it ranks rarity once at its finish), or ``rank=False`` and call both
    once at the end. Collection trait counts are not touched: call ``rebuild_traits`` after the batches.
    When traits or ranks change, the collection's trait generation is bumped (its bitmaps become stale
    until ``rebuild_traits``). Holds the collection's ranking lock from the start: it serializes every
    writer of the collection's ``nft_traits`` rows (see ``_INSERT_TRAITS``) and of its ranks.
    """
    batch = {record.token_id: record for record in nfts}
    if not batch:
        return 0
    params: dict[str, object] = {"collection_id": collection_id}
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_LOCK_POSITIONS, {**params, "lock_class": _POSITIONS_LOCK_CLASS})
        cur.execute(_NFT_BATCH)
        with cur.copy(_COPY_NFTS) as copy:
            for record in batch.values():
                copy.write_row(
                    (
                        record.token_id,
                        _text(record.title),
                        _text(record.description),
                        _text(record.image_url),
                        _text(record.thumbnail_url),
                        None if record.metadata is None else _json(record.metadata),
                        _json(record.attributes),
                        _text(record.metadata_error),
                    )
                )
        cur.execute(_MARK_STALE_TRAITS, params)
        rarity_changed = cur.execute(_NEW_OR_CHANGED_ATTRIBUTES, params).rowcount > 0
        base: int | None = None  # the rank of the batch's first new token, when they can be appended
        if rank:
            append_state = cur.execute(_APPEND_STATE, params).fetchone()
            assert append_state is not None  # noqa: S101 - a one-row SELECT
            base = append_state[0]
        cur.execute(_INSERT_NEW_NFTS, {**params, "base": base})
        cur.execute(_UPDATE_NFTS, params)
        traits_changed = cur.execute(_DELETE_STALE_TRAITS, params).rowcount > 0
        traits_changed |= cur.execute(_INSERT_TRAITS, params).rowcount > 0
        if traits_changed or base is not None:  # new traits, or new ranks
            cur.execute(_BUMP_GENERATION, params)
        if rank and base is None:  # new tokens that could not be appended (it bumps the generation itself)
            assign_positions(conn=conn, collection_id=collection_id)
        if rank and rarity and rarity_changed:  # a token read for the first time or new traits: every score moves
            rank_rarity(conn=conn, collection_id=collection_id)  # (its bitmaps stamped after the bump)
    return len(batch)


def list_tokens(*, conn: Connection, collection_id: uuid.UUID, token_ids: Iterable[int]) -> list[int]:
    """Add the tokens a transfer showed to exist (minted or moved) to the collection's listing when it
    does not hold them yet, ranked; returns the ids added (sorted). Their rows carry no metadata and
    ``attributes`` NULL (``NftDetail.metadata_read`` False) until ingestion, or a read of the token, fills
    them in. Rows already listed are left alone."""
    ids = sorted(set(token_ids))
    if not ids:
        return []
    params: dict[str, object] = {"collection_id": collection_id, "token_ids": ids}
    with conn.transaction():
        conn.execute(_LOCK_POSITIONS, {**params, "lock_class": _POSITIONS_LOCK_CLASS})  # the module's lock order
        rows = conn.execute(_LIST_TOKENS, params).fetchall()
        if rows:
            assign_positions(conn=conn, collection_id=collection_id)
    return sorted(int(token_id) for (token_id,) in rows)


def delete_unlisted_nfts(*, conn: Connection, collection_id: uuid.UUID, listed_token_ids: Iterable[int]) -> int:
    """Delete the collection's tokens that are not in ``listed_token_ids``; returns how many were deleted.

    Meant for the end of a *complete* upstream listing (a partial one would delete tokens that still
    exist): what Alchemy no longer lists was burned or never real. Their ``nft_traits`` rows go with them
    (cascade) and the ranks above them are released (migration 0007's trigger); call ``assign_positions``
    and ``rebuild_traits`` afterwards. An empty listing deletes every token of the collection.
    """
    token_ids = sorted(set(listed_token_ids))
    params: dict[str, object] = {"collection_id": collection_id, "token_ids": token_ids}
    with conn.transaction():
        # The delete re-ranks (0007's trigger) and bumps the trait generation (0010's): ranking lock first.
        conn.execute(_LOCK_POSITIONS, {**params, "lock_class": _POSITIONS_LOCK_CLASS})
        return conn.execute(_DELETE_UNLISTED_NFTS, params).rowcount


def rebuild_traits(*, conn: Connection, collection_id: uuid.UUID) -> None:
    """Recompute the collection's trait facets (``collection_traits``) from ``nft_traits`` in one statement
    (values no token holds any more disappear), then their bitmaps (``rebuild_trait_bitmaps``) when the
    collection is fully ranked: call it after ``assign_positions``."""
    params = {"collection_id": collection_id}
    with conn.transaction():
        conn.execute(_LOCK_GENERATION, params)  # before the facet rows: the lock order of the bitmap build
        conn.execute(_REBUILD_TRAITS, params)
        _build_bitmaps(conn, params)


def rebuild_trait_bitmaps(*, conn: Connection, collection_id: uuid.UUID) -> int:
    """Build the position bitmap of every trait value of the collection (``collection_traits.positions``,
    migration 0010) for its current ranks, stamped with its current generation; returns how many were
    written. Writes nothing while some token is unranked (run ``assign_positions`` first) or when every
    bitmap is already current. Values without a ``collection_traits`` row get none (``rebuild_traits``
    creates the rows first); readers fall back to an exact count for them."""
    params = {"collection_id": collection_id}
    with conn.transaction():
        conn.execute(_LOCK_GENERATION, params)
        return _build_bitmaps(conn, params)


def _build_bitmaps(conn: Connection, params: Mapping[str, object], statement: str = _REBUILD_BITMAPS) -> int:
    """Run ``statement`` (``_REBUILD_BITMAPS``, or ``_REBUILD_RARITY_BITMAPS``) inside the caller's
    transaction with a plan that does not depend on the statistics (hash joins: see the statement's
    comment) and at most ``BITMAP_BUILD_TIMEOUT_MS``. Bitmaps only speed up filtered pages (readers count
    or walk without them), so a build that runs out of time is rolled back to its savepoint and logged, and
    the caller's work goes on: it never holds the caller's transaction (and its locks) for longer than
    that. Returns the bitmaps written."""
    import psycopg

    saved = conn.execute(_CURRENT_PLAN_SETTINGS).fetchone()
    assert saved is not None  # noqa: S101 - a one-row SELECT
    try:
        with conn.transaction():  # a savepoint: a cancelled build undoes only itself (and its settings)
            conn.execute(_SET_PLAN_SETTINGS, {"nestloop": "off", "timeout": f"{BITMAP_BUILD_TIMEOUT_MS}ms"})
            written = conn.execute(statement, params).rowcount
            conn.execute(_SET_PLAN_SETTINGS, {"nestloop": saved[0], "timeout": saved[1]})
    except psycopg.errors.QueryCanceled:
        logger.warning(
            "trait bitmap build ran out of time; filtered totals are counted exactly until the next build",
            extra={"collection_id": str(params["collection_id"]), "timeout_ms": BITMAP_BUILD_TIMEOUT_MS},
        )
        return 0
    return written


def assign_positions(*, conn: Connection, collection_id: uuid.UUID) -> int:
    """Rank the collection's unranked tokens; returns how many rows got a new rank.

    When every unranked token lies above the highest ranked one (ingestion in token order, a new mint)
    they are appended after it; otherwise the collection is re-ranked, writing only the rows whose rank
    moves. Both are one UPDATE, serialized per collection by a transaction-level advisory lock. Ranking
    anything bumps the collection's trait generation (its bitmaps become stale until ``rebuild_traits``).
    """
    params: dict[str, object] = {"collection_id": collection_id}
    with conn.transaction():
        conn.execute(_LOCK_POSITIONS, {**params, "lock_class": _POSITIONS_LOCK_CLASS})
        state = conn.execute(_POSITION_STATE, params).fetchone()
        assert state is not None  # noqa: S101 - a one-row SELECT
        first_unranked, last_position, last_token = state
        if first_unranked is None:
            return 0
        if last_token is None or first_unranked > last_token:
            base = 0 if last_position is None else last_position + 1
            ranked = conn.execute(_APPEND_POSITIONS, {**params, "base": base}).rowcount
        else:
            ranked = conn.execute(_RENUMBER_POSITIONS, params).rowcount
        if ranked:  # new ranks (and bitmap lengths): the bitmaps built before are stale
            conn.execute(_BUMP_GENERATION, params)
        return ranked


# -- rarity ranks (migration 0016) ------------------------------------------------------------------------
# The ranking input: the tokens whose metadata has been read, and each trait value's tokens (one row per
# distinct pair, so names and values are normalized once per pair, not per token).
_RANKED_TOKENS = "SELECT token_id::text FROM nfts WHERE collection_id = %(collection_id)s AND attributes IS NOT NULL"
_TRAIT_TOKENS = """
SELECT trait_type, trait_value, array_agg(token_id::text)
FROM nft_traits WHERE collection_id = %(collection_id)s
GROUP BY trait_type, trait_value
"""

_RARITY_BATCH = """
DROP TABLE IF EXISTS pg_temp.rarity_batch;
CREATE TEMP TABLE rarity_batch (
    token_id        numeric(78, 0) NOT NULL,
    rarity_rank     integer NOT NULL,
    rarity_score    double precision NOT NULL,
    rarity_position integer NOT NULL
) ON COMMIT DROP
"""
_COPY_RARITY = "COPY rarity_batch (token_id, rarity_rank, rarity_score, rarity_position) FROM STDIN"

# One statement over the batch (analyzed first, so the plan is a hash or merge join over the collection's
# rows rather than a guess from stale statistics); rows already as ranked are not rewritten. rarity_position
# has no unique constraint, so rows may pass through each other's places.
_WRITE_RARITY = """
UPDATE nfts AS n
SET rarity_rank = b.rarity_rank, rarity_score = b.rarity_score, rarity_position = b.rarity_position
FROM rarity_batch AS b
WHERE n.collection_id = %(collection_id)s AND n.token_id = b.token_id
  AND (n.rarity_rank, n.rarity_score, n.rarity_position)
      IS DISTINCT FROM (b.rarity_rank, b.rarity_score, b.rarity_position)
"""


def rank_rarity(*, conn: Connection, collection_id: uuid.UUID) -> int:
    """Compute the OpenRarity rank and score of every token of the collection whose metadata has been
    read (``collections.rarity``) and store them with their places (``rarity_position``, dense 0..k-1 in
    rank order), then each trait value's bitmap of places (``collection_traits.rarity_positions``, for
    the rows ``rebuild_traits`` made), stamped with the collection's trait generation; returns how many
    token rows changed. Tokens not read stay unranked. Serialized with the other
    rankers of the collection by the ranking lock, in the caller's transaction when it holds one, so the
    ranks always describe the traits committed with them."""
    params: dict[str, object] = {"collection_id": collection_id}
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_LOCK_POSITIONS, {**params, "lock_class": _POSITIONS_LOCK_CLASS})
        texts = [text for (text,) in cur.execute(_RANKED_TOKENS, params)]
        index_of = {text: index for index, text in enumerate(texts)}
        holders: dict[tuple[str, str], list[int]] = {}
        for trait_type, trait_value, tokens in cur.execute(_TRAIT_TOKENS, params):
            holders[trait_type, trait_value] = [index_of[text] for text in tokens if text in index_of]
        ranked = rank_holders([int(text) for text in texts], holders)
        cur.execute(_RARITY_BATCH)
        with cur.copy(_COPY_RARITY) as copy:
            for rarity in ranked:
                copy.write_row((rarity.token_id, rarity.rank, rarity.score, rarity.position))
        cur.execute("ANALYZE pg_temp.rarity_batch")
        written = cur.execute(_WRITE_RARITY, params).rowcount
        cur.execute(_LOCK_GENERATION, params)  # the lock order: ranking lock, rows, then the generation row
        _build_bitmaps(conn, {**params, "force": written > 0}, _REBUILD_RARITY_BITMAPS)
    return written


def replace_collection_owners(
    *, conn: Connection, collection_id: uuid.UUID, owners: Iterable[tuple[str, int, int]]
) -> OwnersReplaced:
    """Make the collection's ``nft_ownership`` exactly ``owners`` — (owner, token id, balance) triples.

    Rows not listed are deleted, the listed ones that are new or changed balance inserted or updated
    (balance, ``last_verified_at``), in two statements so the summary triggers run once each over the whole
    set; rows already as listed are not rewritten: the collection's ``collection_owner_syncs`` watermark
    marks every row verified now (migration 0011). A non-positive balance means
    "does not hold" (the row is treated as not listed); duplicate (token, owner) pairs count once, with
    their largest balance. For an ERC-721 collection every balance is stored as 1, and a token listed with
    two different owners raises ``ValueError`` (nothing is written): it must end with exactly one owner.
    """
    with conn.transaction(), conn.cursor() as cur:
        token_type_row = cur.execute(_COLLECTION_TOKEN_TYPE, {"collection_id": collection_id}).fetchone()
        if token_type_row is None:
            raise LookupError(f"collection {collection_id} does not exist")
        single_owner = token_type_row[0] == "ERC721"
        holdings = _distinct_holdings(owners, single_owner=single_owner)
        cur.execute(_OWNER_BATCH)
        with cur.copy(_COPY_OWNERS) as copy:
            for (token_id, owner), balance in holdings.items():
                copy.write_row((owner, token_id, balance))
        params = {"collection_id": collection_id, "single_owner": single_owner}
        deleted = cur.execute(_DELETE_ABSENT_OWNERS, params).rowcount
        cur.execute(_UPSERT_OWNERS, params)
        cur.execute(_STAMP_OWNER_SYNC, params)
    return OwnersReplaced(deleted=deleted, held=len(holdings))


def _distinct_holdings(owners: Iterable[tuple[str, int, int]], *, single_owner: bool) -> dict[tuple[int, str], int]:
    """``owners`` as {(token id, owner): balance}: non-positive balances dropped, a repeated pair kept once
    with its largest balance; with ``single_owner`` (ERC-721) every balance is 1 and a token held by two
    owners raises ``ValueError``."""
    holdings: dict[tuple[int, str], int] = {}
    for owner, token_id, balance in owners:
        if balance > 0:
            key = (token_id, owner)
            if balance > holdings.get(key, 0):
                holdings[key] = 1 if single_owner else balance
    if single_owner and len({token_id for token_id, _ in holdings}) != len(holdings):
        owner_of: dict[int, str] = {}
        for token_id, owner in holdings:
            if owner_of.setdefault(token_id, owner) != owner:
                raise ValueError(f"ERC-721 token {token_id} is listed with more than one owner")
    return holdings


def set_token_owners(
    *, conn: Connection, collection_id: uuid.UUID, token_id: int, owners: Sequence[tuple[str, int]]
) -> list[TokenOwner]:
    """Replace the owners of one token with ``owners`` — (address, balance) pairs — verified now.

    Non-positive balances mean "does not hold"; a repeated address keeps its last balance; an empty list
    removes every owner (a burn). For an ERC-721 collection more than one holder raises ``ValueError``.
    Returns the token's owners as stored, largest balance first.
    """
    holders = {address: balance for address, balance in dict(owners).items() if balance > 0}
    addresses = sorted(holders)
    params: dict[str, object] = {
        "collection_id": collection_id,
        "token_id": token_id,
        "owners": addresses,
        "balances": [str(holders[address]) for address in addresses],
    }
    with conn.transaction():
        token_type_row = conn.execute(_COLLECTION_TOKEN_TYPE, params).fetchone()
        if token_type_row is None:
            raise LookupError(f"collection {collection_id} does not exist")
        if token_type_row[0] == "ERC721" and len(addresses) > 1:
            raise ValueError(f"ERC-721 token {token_id} cannot have {len(addresses)} owners")
        params["single_owner"] = token_type_row[0] == "ERC721"
        conn.execute(_DELETE_TOKEN_OWNERS, params)
        rows = conn.execute(_UPSERT_TOKEN_OWNERS, params).fetchall() if addresses else []
    stored = [TokenOwner(owner, balance, verified_at) for owner, balance, verified_at in rows]
    stored.sort(key=lambda owner: (-int(owner.balance), owner.owner_address))
    return stored


def set_ingestion_state(
    *,
    conn: Connection,
    collection_id: uuid.UUID,
    state: IngestionState,
    nfts_indexed: int | None = None,
    owners_indexed: int | None = None,
    error: str | None = None,
) -> CollectionRow | None:
    """Record the ingestion state (counters left as they are when None); see ``_SET_INGESTION_STATE`` for
    the timestamps. Returns the updated collection, or None when it does not exist."""
    params = {
        "collection_id": collection_id,
        "state": state,
        "nfts_indexed": nfts_indexed,
        "owners_indexed": owners_indexed,
        "error": error,
    }
    with conn.transaction():
        row = conn.execute(_SET_INGESTION_STATE, params).fetchone()
    return None if row is None else collection_row(row)


def record_ingestion_progress(
    *, conn: Connection, collection_id: uuid.UUID, resume_key: str | None, listed_through: int | None
) -> None:
    """Record that a run has committed every token up to ``listed_through`` and that its listing goes on
    at ``resume_key`` (the next ``startToken``); ``nfts_indexed`` becomes the count of stored tokens."""
    params = {
        "collection_id": collection_id,
        "resume_key": resume_key,
        "listed_through": None if listed_through is None else str(listed_through),
    }
    with conn.transaction():
        conn.execute(_RECORD_INGESTION_PROGRESS, params)


def record_ingestion_failure(
    *, conn: Connection, collection_id: uuid.UUID, error: str, attempts: int, retry_in_seconds: float | None
) -> CollectionRow | None:
    """State ``failed`` with ``error`` after ``attempts`` failed runs in a row, ``nfts_indexed`` the stored
    tokens, and the retry due in ``retry_in_seconds`` (None: no retry). The resume point is kept."""
    params = {
        "collection_id": collection_id,
        "error": error,
        "attempts": attempts,
        "retry_in_seconds": retry_in_seconds,
    }
    with conn.transaction():
        row = conn.execute(_RECORD_INGESTION_FAILURE, params).fetchone()
    return None if row is None else collection_row(row)


def claim_due_ingestion_retries(*, conn: Connection, limit: int) -> list[str]:
    """Queue again (state ``queued``) up to ``limit`` failed ingestions whose retry is due; returns their
    contract addresses. Call it in the transaction that writes their ``collection.ingest_requested``."""
    with conn.transaction():
        rows = conn.execute(_CLAIM_DUE_RETRIES, {"limit": limit}).fetchall()
    return [address for (address,) in rows]


def mark_refresh(*, conn: Connection, collection_id: uuid.UUID, cooldown_seconds: float) -> datetime | None:
    """Stamp a refresh now and start its cooldown; returns when the cooldown ends (None: no such collection).

    Whether a refresh may start (cooldown, a run in progress) is the caller's decision, taken under its
    refresh lock."""
    with conn.transaction():
        row = conn.execute(
            _MARK_REFRESH, {"collection_id": collection_id, "cooldown_seconds": cooldown_seconds}
        ).fetchone()
    return None if row is None else row[0]


_FAIL_LOST_INGESTION = """
UPDATE collections
SET ingestion_state = 'failed', ingestion_error = %(error)s, ingestion_finished_at = now(),
    refresh_cooldown_until = NULL
WHERE contract_address = %(address)s AND ingestion_state = 'queued'
  AND (last_refresh_at IS NULL OR last_refresh_at <= %(requested_at)s)
RETURNING id
"""


def fail_lost_ingestion(*, conn: Connection, address: str, requested_at: datetime, error: str) -> bool:
    """End a queued ingestion that no run will start (its request was lost): state ``failed`` with
    ``error`` and the refresh cooldown lifted. Only a state still ``queued`` by a request made at or
    before ``requested_at`` changes (never a run that started, never a newer refresh); True if it did."""
    params = {"address": address, "requested_at": requested_at, "error": error}
    with conn.transaction():
        return conn.execute(_FAIL_LOST_INGESTION, params).fetchone() is not None


def _text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL characters, which upstream metadata sometimes contains."""
    if value is None or "\x00" not in value:
        return value
    return value.replace("\x00", "")


def _json(value: object) -> str:
    """JSON text for a jsonb column; jsonb rejects the NUL escape, so NULs are dropped from strings."""
    text = orjson.dumps(value).decode()
    if "\\u0000" in text:
        text = orjson.dumps(_without_nul(value)).decode()
    return text


def _without_nul(value: object) -> object:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(item) for item in value]
    return value


__all__ = [
    "CollectionMetadata",
    "IngestionState",
    "NftRecord",
    "OwnersReplaced",
    "assign_positions",
    "claim_due_ingestion_retries",
    "delete_unlisted_nfts",
    "list_tokens",
    "mark_refresh",
    "rank_rarity",
    "rebuild_trait_bitmaps",
    "rebuild_traits",
    "record_ingestion_failure",
    "record_ingestion_progress",
    "replace_collection_owners",
    "set_ingestion_state",
    "set_token_owners",
    "upsert_collection",
    "upsert_nfts",
]


# -- locks ---------------------------------------------------------------------------------------------
INGESTION_LOCK_CLASS = 0x5C4D_1001
"""Advisory lock class of "ingesting this collection" (the object id is a hash of the contract address)."""
_TRY_INGESTION_LOCK = "SELECT pg_try_advisory_lock(%(lock_class)s, hashtext(%(address)s))"
_INGESTION_UNLOCK = "SELECT pg_advisory_unlock(%(lock_class)s, hashtext(%(address)s))"
_LOCK_COLLECTION_ROW = "SELECT 1 FROM collections WHERE contract_address = %(address)s FOR UPDATE"


@contextlib.contextmanager
def ingestion_lock(*, conn: Connection, address: str) -> Iterator[bool]:
    """Hold the session-level advisory lock of ``address``'s ingestion for the block; yields whether it
    was free. Released on every path; a broken connection released it with its session."""
    params = {"lock_class": INGESTION_LOCK_CLASS, "address": address}
    row = conn.execute(_TRY_INGESTION_LOCK, params).fetchone()
    acquired = bool(row and row[0])
    try:
        yield acquired
    finally:
        if acquired:
            try:
                conn.execute(_INGESTION_UNLOCK, params)
            except Exception:  # a broken connection released it with its session
                logger.warning("could not release the ingestion lock", extra={"contract": address})


def lock_collection_row(*, conn: Connection, address: str) -> None:
    """Lock the collection's row until the end of the caller's transaction (refresh decisions)."""
    conn.execute(_LOCK_COLLECTION_ROW, {"address": address})
