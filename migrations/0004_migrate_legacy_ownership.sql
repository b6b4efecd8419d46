-- 0004: move legacy ownership into the normalized tables: nfts.owner_address -> nft_ownership (the
-- summaries follow through the 0003 triggers) and the JSONB user_nft_cache -> wallet_collection_mapping
-- (source = 'scan'). Addresses are lower-cased; duplicate cache rows of one wallet count once (per
-- wallet and contract the newest row wins); odd data never aborts the migration: every datum that
-- cannot be represented is recorded in legacy_migration_rejects instead of being dropped silently.
-- Idempotent: re-running inserts nothing twice (ON CONFLICT DO NOTHING everywhere); 0005 checks the
-- outcome before it drops user_nft_cache.

CREATE TABLE IF NOT EXISTS legacy_migration_rejects (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source     text NOT NULL,          -- 'nfts' or 'user_nft_cache'
    source_ref text NOT NULL,          -- nfts: '<collection_id>:<token_id>'; cache: '<id>' or '<id>:<entry>'
    reason     text NOT NULL,
    payload    jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, source_ref, reason)
);

DROP TRIGGER IF EXISTS legacy_migration_rejects_set_updated_at ON legacy_migration_rejects;
CREATE TRIGGER legacy_migration_rejects_set_updated_at
    BEFORE UPDATE ON legacy_migration_rejects FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- A legacy address, trimmed and lower-cased, or NULL when it is not a 0x address.
CREATE OR REPLACE FUNCTION legacy_normalize_address(address text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$
    SELECT CASE WHEN lower(btrim(address)) ~ '^0x[0-9a-f]{40}$' THEN lower(btrim(address)) END
$$;

-- A legacy count or balance as numeric(78,0), or NULL for anything that is not a non-negative integer
-- of at most 78 significant digits ("3", " 3 ", JSON 3 pass; "-1", "3.5", "1e400", "abc", "0x1f" and
-- 100-digit numbers do not). Never raises: the cast runs only on text the pattern has vetted.
CREATE OR REPLACE FUNCTION legacy_parse_uint(value text) RETURNS numeric
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$
    SELECT CASE
        WHEN btrim(value, E' \t\r\n') ~ '^[0-9]+$'
         AND length(ltrim(btrim(value, E' \t\r\n'), '0')) <= 78
        THEN btrim(value, E' \t\r\n')::numeric(78, 0)
    END
$$;

-- A JSON field of a cache entry as text for legacy_parse_uint: strings and numbers as written; any
-- other JSON type (object, array, boolean) as its JSON text, which the parser then rejects.
CREATE OR REPLACE FUNCTION legacy_json_scalar(value jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$
    SELECT CASE jsonb_typeof(value)
        WHEN 'string' THEN value #>> '{}'
        WHEN 'null' THEN NULL
        ELSE value::text
    END
$$;

DO $migrate$
BEGIN
    -- nfts.owner_address -> nft_ownership. A later migration may retire the legacy columns.
    IF EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'nfts' AND column_name = 'owner_address'
    ) THEN
        INSERT INTO legacy_migration_rejects (source, source_ref, reason, payload)
        SELECT 'nfts', n.collection_id || ':' || n.token_id, 'invalid owner address',
               jsonb_build_object('collection_id', n.collection_id, 'token_id', n.token_id::text,
                                  'owner_address', n.owner_address)
        FROM nfts AS n
        WHERE n.owner_address IS NOT NULL AND legacy_normalize_address(n.owner_address) IS NULL
        ON CONFLICT (source, source_ref, reason) DO NOTHING;

        -- Only tokens the index knows no owner of: a re-run after later transfers must not bring a
        -- previous owner back.
        INSERT INTO nft_ownership (collection_id, token_id, owner_address, balance, last_verified_at)
        SELECT n.collection_id, n.token_id, legacy_normalize_address(n.owner_address), 1,
               coalesce(n.last_owner_check_at, now())
        FROM nfts AS n
        WHERE legacy_normalize_address(n.owner_address) IS NOT NULL
          AND NOT EXISTS (
              SELECT 1 FROM nft_ownership AS o
              WHERE o.collection_id = n.collection_id AND o.token_id = n.token_id
          )
        ORDER BY n.collection_id, n.token_id
        ON CONFLICT DO NOTHING;

        INSERT INTO legacy_migration_rejects (source, source_ref, reason, payload)
        SELECT 'nfts', n.collection_id || ':' || n.token_id,
               'superseded: nft_ownership already names another owner',
               jsonb_build_object('collection_id', n.collection_id, 'token_id', n.token_id::text,
                                  'owner_address', n.owner_address)
        FROM nfts AS n
        WHERE legacy_normalize_address(n.owner_address) IS NOT NULL
          AND NOT EXISTS (
              SELECT 1 FROM nft_ownership AS o
              WHERE o.collection_id = n.collection_id AND o.token_id = n.token_id
                AND o.owner_address = legacy_normalize_address(n.owner_address)
          )
        ON CONFLICT (source, source_ref, reason) DO NOTHING;
    END IF;

    -- user_nft_cache -> wallet_collection_mapping (source = 'scan'). Gone once 0005 has run.
    IF to_regclass('user_nft_cache') IS NULL THEN
        RETURN;
    END IF;

    INSERT INTO legacy_migration_rejects (source, source_ref, reason, payload)
    SELECT 'user_nft_cache', u.id::text, 'contracts is not a JSON array',
           jsonb_build_object('wallet_address', u.wallet_address, 'contracts', u.contracts)
    FROM user_nft_cache AS u
    WHERE jsonb_typeof(u.contracts) <> 'array'
    ON CONFLICT (source, source_ref, reason) DO NOTHING;

    INSERT INTO legacy_migration_rejects (source, source_ref, reason, payload)
    SELECT 'user_nft_cache', u.id::text, 'invalid wallet address',
           jsonb_build_object('wallet_address', u.wallet_address, 'contracts', u.contracts)
    FROM user_nft_cache AS u
    WHERE legacy_normalize_address(u.wallet_address) IS NULL
    ON CONFLICT (source, source_ref, reason) DO NOTHING;

    INSERT INTO legacy_migration_rejects (source, source_ref, reason, payload)
    SELECT 'user_nft_cache', u.id || ':' || e.ordinality,
           CASE WHEN jsonb_typeof(e.entry) <> 'object' THEN 'contract entry is not an object'
                ELSE 'invalid contract address' END,
           jsonb_build_object('wallet_address', u.wallet_address, 'entry', e.entry)
    FROM user_nft_cache AS u
    CROSS JOIN LATERAL jsonb_array_elements(u.contracts) WITH ORDINALITY AS e(entry, ordinality)
    WHERE jsonb_typeof(u.contracts) = 'array'
      AND legacy_normalize_address(u.wallet_address) IS NOT NULL
      AND (jsonb_typeof(e.entry) <> 'object'
           OR legacy_normalize_address(e.entry ->> 'address') IS NULL)
    ON CONFLICT (source, source_ref, reason) DO NOTHING;

    -- One entry per (wallet, contract): the newest row (updated_at, then id) wins, and within one row
    -- the last entry for a contract.
    CREATE TEMPORARY TABLE legacy_cache_winners ON COMMIT DROP AS
    SELECT DISTINCT ON (wallet_address, contract_address)
           legacy_normalize_address(u.wallet_address) AS wallet_address,
           legacy_normalize_address(e.entry ->> 'address') AS contract_address,
           u.id || ':' || e.ordinality AS source_ref,
           u.wallet_address AS legacy_wallet_address,
           e.entry,
           u.updated_at
    FROM user_nft_cache AS u
    CROSS JOIN LATERAL jsonb_array_elements(u.contracts) WITH ORDINALITY AS e(entry, ordinality)
    WHERE jsonb_typeof(u.contracts) = 'array'
      AND jsonb_typeof(e.entry) = 'object'
      AND legacy_normalize_address(u.wallet_address) IS NOT NULL
      AND legacy_normalize_address(e.entry ->> 'address') IS NOT NULL
    ORDER BY wallet_address, contract_address, u.updated_at DESC, u.id DESC, e.ordinality DESC;

    INSERT INTO wallet_collection_mapping (
        wallet_address, contract_address, collection_id, num_distinct_tokens, total_balance, source,
        last_owned_at, scanned_at, name, symbol, token_type, is_spam
    )
    SELECT w.wallet_address, w.contract_address, c.id,
           legacy_parse_uint(legacy_json_scalar(w.entry -> 'numDistinctTokensOwned')),
           legacy_parse_uint(legacy_json_scalar(w.entry -> 'totalBalance')),
           'scan', w.updated_at, w.updated_at,
           w.entry ->> 'name', w.entry ->> 'symbol', w.entry ->> 'tokenType',
           CASE jsonb_typeof(w.entry -> 'isSpam')
               WHEN 'boolean' THEN (w.entry -> 'isSpam')::boolean
               WHEN 'string' THEN CASE lower(btrim(w.entry ->> 'isSpam'))
                                      WHEN 'true' THEN true WHEN 'false' THEN false END
           END
    FROM legacy_cache_winners AS w
    LEFT JOIN collections AS c ON c.contract_address = w.contract_address
    ORDER BY w.wallet_address, w.contract_address
    ON CONFLICT (wallet_address, contract_address) DO NOTHING;  -- an index row already there wins

    -- Figures kept as NULL because the legacy value was present but not a representable count.
    INSERT INTO legacy_migration_rejects (source, source_ref, reason, payload)
    SELECT 'user_nft_cache', w.source_ref, 'unparseable ' || f.field,
           jsonb_build_object('wallet_address', w.legacy_wallet_address, 'entry', w.entry)
    FROM legacy_cache_winners AS w
    CROSS JOIN (VALUES ('numDistinctTokensOwned'), ('totalBalance')) AS f(field)
    WHERE legacy_json_scalar(w.entry -> f.field) IS NOT NULL
      AND legacy_parse_uint(legacy_json_scalar(w.entry -> f.field)) IS NULL
    ON CONFLICT (source, source_ref, reason) DO NOTHING;

    DROP TABLE legacy_cache_winners;
END
$migrate$;
