-- 0016: OpenRarity ranks (issue 18). such_market.collections.rarity computes them for a collection's tokens
-- whose metadata has been read (attributes IS NOT NULL) and such_market.collections.writes.rank_rarity
-- stores them, in the transaction that changed the traits (or at the end of an ingestion):
--
--   rarity_rank      OpenRarity's rank, 1 = rarest; tokens whose scores are math.isclose share one (1, 2, 2, 5)
--   rarity_score     the information-content score divided by the collection's entropy
--   rarity_position  0-based place in (rarity_rank, token_id) order, dense 0..k-1 over the ranked tokens,
--                    so a sort=rarity page p of size s is the range [p*s, p*s + s) at any depth, and
--                    sort=-rarity the same range counted from the end
--
-- NULL in all three: not ranked (metadata never read, or stored before this migration: the collection's
-- next ingestion or refresh ranks it). Ranked positions are dense: a delete releases the places above the
-- lowest deleted one (the trigger below, as 0007 does for nfts.position) until the deleting transaction,
-- or the next one that changes traits, ranks again; readers use a position range only while it is as full
-- as it should be and walk the order otherwise: slower, never wrong.
-- Idempotent: every object is created only if missing.

ALTER TABLE nfts ADD COLUMN IF NOT EXISTS rarity_rank integer CHECK (rarity_rank >= 1);
ALTER TABLE nfts ADD COLUMN IF NOT EXISTS rarity_score double precision;
ALTER TABLE nfts ADD COLUMN IF NOT EXISTS rarity_position integer CHECK (rarity_position >= 0);

-- Trait filters in rarity order: for each (trait_type, trait_value), one bit per rarity place (bit i set
-- when the token at rarity_position i carries the value), built by rank_rarity in the transaction that
-- wrote the places and stamped with the collection's trait generation (0010), which every later change of
-- traits, token positions or tokens bumps: a filtered sort=rarity page reads the AND over types of the OR
-- of each type's values, counts it, and picks the page's places from it; a stale stamp means "walk".
ALTER TABLE collection_traits ADD COLUMN IF NOT EXISTS rarity_positions varbit;
ALTER TABLE collection_traits ADD COLUMN IF NOT EXISTS rarity_positions_generation bigint;
ALTER TABLE collection_traits ALTER COLUMN rarity_positions SET STORAGE EXTERNAL;

-- Rarity order, both directions (a backward index scan serves sort=-rarity).
CREATE INDEX IF NOT EXISTS nfts_rarity_position
    ON nfts (collection_id, rarity_position) WHERE rarity_position IS NOT NULL;
-- The unranked tokens, in token order: they follow the ranked ones in either direction.
CREATE INDEX IF NOT EXISTS nfts_rarity_unranked ON nfts (collection_id, token_id) WHERE rarity_position IS NULL;

CREATE OR REPLACE FUNCTION nfts_release_rarity_positions() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    UPDATE nfts AS n
    SET rarity_position = NULL
    FROM (
        SELECT collection_id, min(rarity_position) AS first_position
        FROM old_rows
        WHERE rarity_position IS NOT NULL
        GROUP BY collection_id
    ) AS d
    WHERE n.collection_id = d.collection_id AND n.rarity_position > d.first_position;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS nfts_release_rarity_positions ON nfts;
CREATE TRIGGER nfts_release_rarity_positions
    AFTER DELETE ON nfts REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nfts_release_rarity_positions();
