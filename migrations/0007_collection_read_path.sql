-- 0007: the collections read path. Page-number access at any depth costs O(pageSize): every token of a
-- collection gets a dense rank, nfts.position (0-based, in numeric token_id order), so page p of size s
-- is the index range position ∈ [p·s, p·s + s) instead of an OFFSET that walks p·s rows.
--
-- Invariant (kept by such_market.collections.writes.assign_positions and the delete trigger below): the
-- rows of a collection that have a position hold exactly 0..k-1, in token_id order. New rows arrive with
-- position NULL; readers use positions only while no row of the collection is NULL and fall back to
-- keyset/OFFSET otherwise, so a half-assigned collection is slower, never wrong.
-- collections already holds every ingestion field the writers need (0001): nothing to add there.
-- Idempotent: every object is created only if missing or replaced in place.

ALTER TABLE nfts ADD COLUMN IF NOT EXISTS position integer CHECK (position >= 0);

-- DEFERRABLE (checked at the end of each statement, not per row): a renumbering UPDATE shifts ranks
-- that transiently collide. The index still serves ordinary index scans.
DO
$$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = 'nfts'::regclass AND conname = 'nfts_collection_position_key'
    ) THEN
        ALTER TABLE nfts ADD CONSTRAINT nfts_collection_position_key
            UNIQUE (collection_id, position) DEFERRABLE INITIALLY IMMEDIATE;
    END IF;
END
$$;

-- The rows still waiting for a rank: "is the collection fully ranked?" is one probe of this small index,
-- and assign_positions reads the waiting rows in token order from it.
CREATE INDEX IF NOT EXISTS nfts_unpositioned ON nfts (collection_id, token_id) WHERE position IS NULL;

-- Deleting tokens leaves holes in the ranks. Instead of renumbering inside the delete, release the
-- ranks above the lowest deleted one: the survivors above it become NULL (unranked, so readers fall
-- back) and the next assign_positions appends them again, densely.
CREATE OR REPLACE FUNCTION nfts_release_positions() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    UPDATE nfts AS n
    SET position = NULL
    FROM (
        SELECT collection_id, min(position) AS first_position
        FROM old_rows
        WHERE position IS NOT NULL
        GROUP BY collection_id
    ) AS d
    WHERE n.collection_id = d.collection_id AND n.position > d.first_position;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS nfts_release_positions ON nfts;
CREATE TRIGGER nfts_release_positions
    AFTER DELETE ON nfts REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nfts_release_positions();

-- A wallet's tokens in one collection, in token order, straight from the index (owned-tokens pages).
-- It supersedes nft_ownership_owner (owner_address, collection_id), a prefix of it.
CREATE INDEX IF NOT EXISTS nft_ownership_owner_token ON nft_ownership (owner_address, collection_id, token_id);
DROP INDEX IF EXISTS nft_ownership_owner;
