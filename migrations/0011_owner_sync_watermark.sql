-- 0011: cheaper ownership syncs.
-- Idempotent: every object is created only if missing or replaced in place.
--
-- 1. Per-collection verification watermark. A bulk sync (writes.replace_collection_owners) verifies every
--    row of the collection, but rewriting the ~90 % of rows that did not change only to bump their
--    last_verified_at costs a new tuple and an entry in every index per row, plus two transition-table
--    rows each for the summary triggers. Instead the sync writes only the rows whose owner or balance
--    changed (stamped now()) and records its time here once. A row's effective verification time is
--    greatest(nft_ownership.last_verified_at, collection_owner_syncs.verified_at of its collection);
--    readers (token owners, re-verification) use that.
CREATE TABLE IF NOT EXISTS collection_owner_syncs (
    collection_id uuid PRIMARY KEY REFERENCES collections (id) ON DELETE CASCADE,
    verified_at   timestamptz NOT NULL
);
-- Re-verification walks collections by their watermark, oldest first.
CREATE INDEX IF NOT EXISTS collection_owner_syncs_verified ON collection_owner_syncs (verified_at, collection_id);

-- Re-verification reads, per collection, the rows stamped before its watermark and those stamped after
-- it, each oldest first: one range of this index each. It supersedes (last_verified_at) alone.
CREATE INDEX IF NOT EXISTS nft_ownership_collection_verified ON nft_ownership (collection_id, last_verified_at);
DROP INDEX IF EXISTS nft_ownership_last_verified;

-- 2. single_owner (0008) without a per-row trigger. The set-based writers set the flag themselves (they
--    know the collection's token type); one statement-level AFTER INSERT trigger then corrects, in one
--    set-based UPDATE, any inserted row whose flag differs from what 0008's BEFORE trigger would have set
--    (a writer that does not set it, or a token type changed meanwhile). So the stored result is the
--    same as before, a second owner row of an ERC-721 token still fails on nft_ownership_single_owner in
--    the same statement, and a conforming bulk insert costs one hash join over its new rows instead of
--    one collections probe per row. It fires before the summary triggers (name order), whose sums do not
--    depend on the flag.
DROP TRIGGER IF EXISTS nft_ownership_set_single_owner ON nft_ownership;
DROP FUNCTION IF EXISTS nft_ownership_set_single_owner();

CREATE OR REPLACE FUNCTION nft_ownership_fix_single_owner() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    UPDATE nft_ownership AS o
    SET single_owner = f.expected
    FROM (
        SELECT n.collection_id, n.token_id, n.owner_address,
               coalesce(c.token_type = 'ERC721', false) AS expected
        FROM new_rows AS n
        LEFT JOIN collections AS c ON c.id = n.collection_id
        WHERE n.single_owner IS DISTINCT FROM coalesce(c.token_type = 'ERC721', false)
    ) AS f
    WHERE o.collection_id = f.collection_id AND o.token_id = f.token_id AND o.owner_address = f.owner_address
      AND o.single_owner IS DISTINCT FROM f.expected;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS nft_ownership_set_single_owner_after ON nft_ownership;
CREATE TRIGGER nft_ownership_set_single_owner_after
    AFTER INSERT ON nft_ownership REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nft_ownership_fix_single_owner();
