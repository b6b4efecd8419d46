-- 0010: trait bitmaps, so the total of a filtered NFT page is a few bit operations instead of a count over
-- the intersection of nft_traits ranges. For each (trait_type, trait_value) of a fully ranked collection,
-- collection_traits.positions holds one bit per rank (nfts.position, 0007): bit i is set when the token at
-- position i carries the value. A filter's total is then bit_count(AND over types of (OR over the type's
-- values)); the bit strings of one collection all have the collection's ranked count as their length.
--
-- Staleness is made harmless with a generation stamp instead of eager maintenance:
--   collection_trait_generations.generation  bumped (in the writer's own transaction) whenever the
--       collection's ranks or nft_traits rows change: assign_positions ranking rows, upsert_nfts rewriting
--       traits, and any DELETE of nfts rows (the trigger below; deletes release ranks and cascade to
--       nft_traits);
--   collection_traits.positions_generation  the generation the bit string was built for
--       (such_market.collections.writes.rebuild_trait_bitmaps, called by rebuild_traits).
-- Readers use a bit string only when its stamp equals the collection's current generation (read in the
-- same snapshot), and fall back to the exact count otherwise: a stale bitmap is slower, never wrong.
-- Idempotent: every object is created only if missing or replaced in place.

CREATE TABLE IF NOT EXISTS collection_trait_generations (
    collection_id uuid PRIMARY KEY REFERENCES collections (id) ON DELETE CASCADE,
    generation    bigint NOT NULL DEFAULT 0
);

ALTER TABLE collection_traits ADD COLUMN IF NOT EXISTS positions varbit;
ALTER TABLE collection_traits ADD COLUMN IF NOT EXISTS positions_generation bigint;
-- Always out of line and uncompressed: the facet reads (get_traits) never touch the bits and keep
-- scanning narrow rows; a filter reads a handful of ~12 kB values (100k tokens) without decompressing.
ALTER TABLE collection_traits ALTER COLUMN positions SET STORAGE EXTERNAL;

-- A delete of tokens changes ranks (0007's trigger releases them) and traits (the cascade): bump the
-- generation of every collection that lost rows. A collection being deleted itself is skipped (its
-- generation row goes with it; re-creating it would violate the foreign key).
CREATE OR REPLACE FUNCTION nfts_bump_trait_generation() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    INSERT INTO collection_trait_generations AS g (collection_id)
    SELECT DISTINCT d.collection_id
    FROM old_rows AS d
    WHERE EXISTS (SELECT 1 FROM collections AS c WHERE c.id = d.collection_id)
    ON CONFLICT (collection_id) DO UPDATE SET generation = g.generation + 1;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS nfts_bump_trait_generation ON nfts;
CREATE TRIGGER nfts_bump_trait_generation
    AFTER DELETE ON nfts REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nfts_bump_trait_generation();
