-- 0019: cheaper nft_traits and rank writes (issue 18: a first ingestion of 10,000 tokens at 100 ms upstream latency
-- in ≤ 3 s; measured by bench/ingestion.py). Ingestion writes about six nft_traits rows per token, and
-- the foreign key to nfts checked each of them with a lookup of its token (one SPI query per row: about a
-- fifth of the insert's time). The rows are only ever written by such_market.collections.writes.upsert_nfts,
-- from the attributes of the nfts rows it has just written and still holds locked in the same transaction,
-- so the check could never fail; what the key did besides is its ON DELETE CASCADE, kept below as one
-- statement-level trigger (one join over the deleted rows, like 0007's and 0010's delete triggers) instead
-- of a cascade query per deleted token. Deleting a collection cascades to its nfts, which fires it.
-- Idempotent: the key is dropped only if present, the function and trigger replaced in place.

DO
$$
DECLARE
    fk record;
BEGIN
    FOR fk IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'nft_traits'::regclass AND confrelid = 'nfts'::regclass AND contype = 'f'
    LOOP
        EXECUTE format('ALTER TABLE nft_traits DROP CONSTRAINT %I', fk.conname);
    END LOOP;
END
$$;

-- The deleted tokens' traits, found through nft_traits_token (collection_id, token_id).
CREATE OR REPLACE FUNCTION nfts_delete_traits() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    DELETE FROM nft_traits AS t
    USING old_rows AS d
    WHERE t.collection_id = d.collection_id AND t.token_id = d.token_id;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS nfts_delete_traits ON nfts;
CREATE TRIGGER nfts_delete_traits
    AFTER DELETE ON nfts REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nfts_delete_traits();

-- A TRUNCATE fires no delete trigger, and without the key `TRUNCATE ... CASCADE` no longer reaches nft_traits:
-- emptying nfts empties it too.
CREATE OR REPLACE FUNCTION nfts_truncate_traits() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    TRUNCATE nft_traits;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS nfts_truncate_traits ON nfts;
CREATE TRIGGER nfts_truncate_traits
    AFTER TRUNCATE ON nfts
    FOR EACH STATEMENT EXECUTE FUNCTION nfts_truncate_traits();

-- nfts.updated_at says when a token's data last changed, not its ranks: the per-row trigger that stamps
-- it no longer fires for statements that set only ranks (assign_positions, rank_rarity), which rewrite
-- every row of a collection (about a fifth of rank_rarity's UPDATE went to the trigger). Nothing reads
-- the column; the writers that change data set these columns and still stamp it.
DROP TRIGGER IF EXISTS nfts_set_updated_at ON nfts;
CREATE TRIGGER nfts_set_updated_at
    BEFORE UPDATE OF collection_id, token_id, title, description, image_url, thumbnail_url, metadata, attributes,
        metadata_error, owner_address, last_owner_check_at
    ON nfts FOR EACH ROW EXECUTE FUNCTION set_updated_at();
