-- 0009: wallet_scans, the record of the last Alchemy wallet scan (getContractsForOwner) of each wallet.
-- Idempotent: every object is created only if missing or replaced in place.
--
-- "Was this wallet scanned, and when" cannot be read from wallet_collection_mapping: a scan that found
-- nothing, or only contracts our index already holds (index rows, which a scan never writes), leaves no
-- scan row, so such a wallet looked never scanned and was rescanned on every normalized miss; nor do the
-- rows say whether the scan reached the end of the listing. One row per wallet answers both. It is written
-- in the same transaction as the wallet's scan rows, so the record and the rows never disagree.
--   scanned_at      when the scan was stored (the transaction time, equal to the scan rows' scanned_at);
--   complete        false when the page cap or a repeated page key stopped the listing before its end
--                   (the wallet holds collections the scan did not list; its old scan rows were kept);
--   contracts_found how many collections the scan found: the distinct contracts listed, or Alchemy's
--                   totalCount when that is larger (a truncated scan) — the answers' totalCollectionsFound.
-- Existing scan rows are not turned into records: whether their scans were complete is unknown, so each
-- such wallet is scanned once more on its next normalized miss, which records it properly.
CREATE TABLE IF NOT EXISTS wallet_scans (
    wallet_address  text        PRIMARY KEY CHECK (wallet_address ~ '^0x[0-9a-f]{40}$'),
    scanned_at      timestamptz NOT NULL,
    complete        boolean     NOT NULL,
    contracts_found integer     NOT NULL CHECK (contracts_found >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

DROP TRIGGER IF EXISTS wallet_scans_set_updated_at ON wallet_scans;
CREATE TRIGGER wallet_scans_set_updated_at
    BEFORE UPDATE ON wallet_scans FOR EACH ROW EXECUTE FUNCTION set_updated_at();
