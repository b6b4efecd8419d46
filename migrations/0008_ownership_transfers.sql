-- 0008: ownership transfers from the Alchemy NFT-activity webhook, applied idempotently and reversibly,
-- and the database-level guarantee that an ERC-721 token has at most one owner row.
-- Idempotent: every object is created only if missing or replaced in place.
--
-- ownership_activity: one row per transfer the webhook (or a caller of apply_transfers) reported.
--   Identity = the on-chain log itself: (block_hash, tx_hash, log_index, batch_index), where batch_index
--   is the position of the token in the log's ERC-1155 TransferBatch (0 for ERC-721 and TransferSingle)
--   and block_hash is '' when the payload did not carry one. Not the webhook event id: Alchemy retries a
--   delivery with the same id but may also send the same log in another delivery, and a re-org sends the
--   removal of a log under a new id. Keyed by the log:
--   - a replayed delivery, or the same log in another delivery, finds its row: nothing changes;
--   - removed = true for a row that was applied reverses it once (removed_at is set; a second removal
--     finds removed already true: nothing changes);
--   - a removal that arrives before its log is recorded as a tombstone (removed, never applied), so the
--     late log is a no-op instead of resurrecting an orphaned transfer;
--   - the same transaction re-mined in another block after a re-org has another block hash: a new row,
--     applied again.
--   applied says whether the transfer changed nft_ownership: false for collections we do not index
--   (contract not in collections; they are recorded for the audit trail only) and for tombstones.
--   collection_id is set NULL when the collection is deleted, so a later removal never reverses onto
--   a re-created collection.
CREATE TABLE IF NOT EXISTS ownership_activity (
    block_hash       text           NOT NULL DEFAULT '' CHECK (block_hash = '' OR block_hash ~ '^0x[0-9a-f]{64}$'),
    tx_hash          text           NOT NULL CHECK (tx_hash ~ '^0x[0-9a-f]{64}$'),
    log_index        integer        NOT NULL CHECK (log_index >= 0),
    batch_index      integer        NOT NULL DEFAULT 0 CHECK (batch_index >= 0),
    event_id         text           NOT NULL,
    contract_address text           NOT NULL CHECK (contract_address ~ '^0x[0-9a-f]{40}$'),
    collection_id    uuid           REFERENCES collections (id) ON DELETE SET NULL,
    token_id         numeric(78, 0) NOT NULL CHECK (token_id >= 0),
    from_address     text           NOT NULL CHECK (from_address ~ '^0x[0-9a-f]{40}$'),
    to_address       text           NOT NULL CHECK (to_address ~ '^0x[0-9a-f]{40}$'),
    amount           numeric(78, 0) NOT NULL CHECK (amount >= 0),
    block_number     bigint         NOT NULL CHECK (block_number >= 0),
    removed          boolean        NOT NULL DEFAULT false,
    applied          boolean        NOT NULL DEFAULT false,
    applied_at       timestamptz,
    removed_at       timestamptz,
    created_at       timestamptz    NOT NULL DEFAULT now(),
    updated_at       timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (tx_hash, log_index, batch_index, block_hash)
);
-- Deleting a collection sets its activity's collection_id to NULL: without this index every such
-- delete scans the table.
CREATE INDEX IF NOT EXISTS ownership_activity_collection ON ownership_activity (collection_id);
-- "What happened to this token", newest first: the ERC-721 out-of-order check (an older transfer that
-- arrives after a newer one must not move the token back) reads the newest applied row per token.
CREATE INDEX IF NOT EXISTS ownership_activity_token
    ON ownership_activity (contract_address, token_id, block_number DESC, log_index DESC, batch_index DESC);

DROP TRIGGER IF EXISTS ownership_activity_set_updated_at ON ownership_activity;
CREATE TRIGGER ownership_activity_set_updated_at
    BEFORE UPDATE ON ownership_activity FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- At most one owner row per ERC-721 token, enforced by a partial unique index. The index needs the
-- collection's token type on the row, so nft_ownership.single_owner copies it:
--   - on INSERT, a BEFORE row trigger sets it from collections (one primary-key probe per row);
--   - when a collection's token_type changes, its rows follow (an ERC-721 token that already has several
--     rows — legacy data — stays unflagged, so the change never fails; re-verification repairs it).
-- A row's collection never changes (moves only change owner_address), so UPDATEs keep the flag.
-- The flag is an implementation detail of the index: writers never set it (the trigger overrides it).
ALTER TABLE nft_ownership ADD COLUMN IF NOT EXISTS single_owner boolean NOT NULL DEFAULT false;

CREATE OR REPLACE FUNCTION nft_ownership_set_single_owner() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    NEW.single_owner := coalesce(
        (SELECT c.token_type = 'ERC721' FROM collections AS c WHERE c.id = NEW.collection_id), false);
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS nft_ownership_set_single_owner ON nft_ownership;
CREATE TRIGGER nft_ownership_set_single_owner
    BEFORE INSERT ON nft_ownership FOR EACH ROW EXECUTE FUNCTION nft_ownership_set_single_owner();

-- Flags (or unflags) the rows of collection p_collection_id after its token type became p_token_type.
CREATE OR REPLACE FUNCTION nft_ownership_sync_single_owner(p_collection_id uuid, p_token_type text) RETURNS void
    LANGUAGE sql AS
$$
    UPDATE nft_ownership AS o
    SET single_owner = p_token_type = 'ERC721'
                       AND NOT EXISTS (
                           SELECT 1 FROM nft_ownership AS other
                           WHERE other.collection_id = o.collection_id AND other.token_id = o.token_id
                             AND other.owner_address <> o.owner_address)
    WHERE o.collection_id = p_collection_id
      AND o.single_owner IS DISTINCT FROM (
              p_token_type = 'ERC721'
              AND NOT EXISTS (
                  SELECT 1 FROM nft_ownership AS other
                  WHERE other.collection_id = o.collection_id AND other.token_id = o.token_id
                    AND other.owner_address <> o.owner_address));
$$;

CREATE OR REPLACE FUNCTION collections_sync_single_owner() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM nft_ownership_sync_single_owner(NEW.id, NEW.token_type);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS collections_sync_single_owner ON collections;
CREATE TRIGGER collections_sync_single_owner
    AFTER UPDATE OF token_type ON collections FOR EACH ROW
    WHEN (OLD.token_type IS DISTINCT FROM NEW.token_type)
    EXECUTE FUNCTION collections_sync_single_owner();

-- Backfill the rows that existed before this migration (a no-op when re-run).
SELECT nft_ownership_sync_single_owner(c.id, c.token_type) FROM collections AS c WHERE c.token_type = 'ERC721';

CREATE UNIQUE INDEX IF NOT EXISTS nft_ownership_single_owner
    ON nft_ownership (collection_id, token_id) WHERE single_owner;
