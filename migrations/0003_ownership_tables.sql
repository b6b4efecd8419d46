-- 0003: normalized ownership. nft_ownership says who holds what; user_collections (per owner and
-- collection) and wallet_collection_mapping (per wallet and contract address) summarize it and are
-- maintained by statement-level triggers in the same transaction as every change to nft_ownership.
--
-- Trigger design (both summaries):
--   1. Aggregate the statement's transition tables into per-key deltas: +1 token/+balance for every new
--      row, -1/-balance for every old row (an UPDATE is old rows out, new rows in), keeping only keys
--      whose delta is non-zero and whose collection still exists (a collection being deleted takes its
--      summary rows with it through their own ON DELETE CASCADE).
--   2. Lock the existing summary rows of those keys in key order (SELECT ... ORDER BY key FOR UPDATE), so
--      concurrent transactions queue on the same rows in the same order instead of deadlocking.
--   3. In one statement with a fresh snapshot (taken after the locks were granted): delete the rows whose
--      count falls to 0, add the deltas to the others, and INSERT ... ORDER BY key ... ON CONFLICT DO
--      UPDATE the keys that had no row (their deltas are positive). Deltas commute, so concurrent
--      writers compose. The CHECK (count > 0) constraints rule out one plain "upsert deltas then delete
--      zeros" statement: PostgreSQL checks the proposed row of an upsert before it looks for a conflict.
--   wallet_collection_mapping rows that came from a wallet scan (source = 'scan') are taken over by the
--   index: their figures are recomputed from nft_ownership for that key rather than scan figures + delta.

-- Set-based per-key deltas of one nft_ownership statement, as SQL reading its transition tables
-- (new_rows / old_rows, declared by the triggers below) for trigger operation `op`.
CREATE OR REPLACE FUNCTION nft_ownership_delta_sql(op text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$
    SELECT format(
        $q$
        SELECT ch.owner_address, ch.collection_id, c.contract_address,
               sum(ch.tokens)::integer AS tokens, sum(ch.balance) AS balance
        FROM (%s) AS ch
        JOIN collections AS c ON c.id = ch.collection_id
        GROUP BY ch.owner_address, ch.collection_id, c.contract_address
        HAVING sum(ch.tokens) <> 0 OR sum(ch.balance) <> 0
        $q$,
        CASE op
            WHEN 'INSERT' THEN
                'SELECT owner_address, collection_id, 1 AS tokens, balance FROM new_rows'
            WHEN 'DELETE' THEN
                'SELECT owner_address, collection_id, -1 AS tokens, -balance AS balance FROM old_rows'
            WHEN 'UPDATE' THEN
                'SELECT owner_address, collection_id, 1 AS tokens, balance FROM new_rows
                 UNION ALL
                 SELECT owner_address, collection_id, -1 AS tokens, -balance AS balance FROM old_rows'
        END
    )
$$;

CREATE TABLE IF NOT EXISTS nft_ownership (
    collection_id    uuid NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    token_id         numeric(78, 0) NOT NULL CHECK (token_id >= 0),
    owner_address    text NOT NULL CHECK (owner_address ~ '^0x[0-9a-f]{40}$'),
    balance          numeric(78, 0) NOT NULL DEFAULT 1 CHECK (balance > 0),
    last_verified_at timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, token_id, owner_address)
);
CREATE INDEX IF NOT EXISTS nft_ownership_owner ON nft_ownership (owner_address, collection_id);
CREATE INDEX IF NOT EXISTS nft_ownership_last_verified ON nft_ownership (last_verified_at);

-- Per (owner, collection): distinct tokens held and total balance. The (collection_id) index answers
-- "which wallets hold collection X".
CREATE TABLE IF NOT EXISTS user_collections (
    owner_address text NOT NULL CHECK (owner_address ~ '^0x[0-9a-f]{40}$'),
    collection_id uuid NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    token_count   integer NOT NULL CHECK (token_count > 0),
    total_balance numeric(78, 0) NOT NULL CHECK (total_balance > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_address, collection_id)
);
CREATE INDEX IF NOT EXISTS user_collections_collection ON user_collections (collection_id);

-- Per (wallet, contract address), whether or not we index the contract. source = 'index': maintained
-- from nft_ownership by the triggers; source = 'scan': reported by an Alchemy wallet scan or the legacy
-- cache (NULL figures: the scan reported a number we could not parse).
CREATE TABLE IF NOT EXISTS wallet_collection_mapping (
    wallet_address      text NOT NULL CHECK (wallet_address ~ '^0x[0-9a-f]{40}$'),
    contract_address    text NOT NULL CHECK (contract_address ~ '^0x[0-9a-f]{40}$'),
    collection_id       uuid REFERENCES collections (id) ON DELETE CASCADE,
    num_distinct_tokens numeric(78, 0) CHECK (num_distinct_tokens >= 0),
    total_balance       numeric(78, 0) CHECK (total_balance >= 0),
    source              text NOT NULL CHECK (source IN ('index', 'scan')),
    last_owned_at       timestamptz,
    scanned_at          timestamptz,
    name                text,
    symbol              text,
    token_type          text,
    is_spam             boolean,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (wallet_address, contract_address)
);
CREATE INDEX IF NOT EXISTS wallet_collection_mapping_contract ON wallet_collection_mapping (contract_address);
-- Deleting a collection cascades here; without this index every such delete scans the table.
CREATE INDEX IF NOT EXISTS wallet_collection_mapping_collection ON wallet_collection_mapping (collection_id);

CREATE OR REPLACE FUNCTION update_user_collection_count() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    v_owners      text[];
    v_collections uuid[];
    v_tokens      integer[];
    v_balances    numeric[];
BEGIN
    EXECUTE format(
        'SELECT array_agg(owner_address), array_agg(collection_id), array_agg(tokens), array_agg(balance)
         FROM (%s) AS d',
        nft_ownership_delta_sql(TG_OP))
    INTO v_owners, v_collections, v_tokens, v_balances;
    IF v_owners IS NULL THEN
        RETURN NULL;
    END IF;

    PERFORM 1
    FROM user_collections AS uc
    JOIN unnest(v_owners, v_collections) AS d(owner_address, collection_id)
      ON uc.owner_address = d.owner_address AND uc.collection_id = d.collection_id
    ORDER BY uc.owner_address, uc.collection_id
    FOR UPDATE OF uc;

    WITH d AS (
        SELECT * FROM unnest(v_owners, v_collections, v_tokens, v_balances)
            AS d(owner_address, collection_id, tokens, balance)
    ),
    emptied AS (
        DELETE FROM user_collections AS uc
        USING d
        WHERE uc.owner_address = d.owner_address AND uc.collection_id = d.collection_id
          AND uc.token_count + d.tokens <= 0
    ),
    changed AS (
        UPDATE user_collections AS uc
        SET token_count = uc.token_count + d.tokens,
            total_balance = uc.total_balance + d.balance
        FROM d
        WHERE uc.owner_address = d.owner_address AND uc.collection_id = d.collection_id
          AND uc.token_count + d.tokens > 0
    )
    INSERT INTO user_collections AS uc (owner_address, collection_id, token_count, total_balance)
    SELECT d.owner_address, d.collection_id, d.tokens, d.balance
    FROM d
    WHERE NOT EXISTS (
        SELECT 1 FROM user_collections AS present
        WHERE present.owner_address = d.owner_address AND present.collection_id = d.collection_id
    )
    ORDER BY d.owner_address, d.collection_id
    ON CONFLICT (owner_address, collection_id) DO UPDATE
    SET token_count = uc.token_count + excluded.token_count,
        total_balance = uc.total_balance + excluded.total_balance;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION update_wallet_collection_mapping() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    v_wallets     text[];
    v_contracts   text[];
    v_collections uuid[];
    v_tokens      integer[];
    v_balances    numeric[];
BEGIN
    EXECUTE format(
        'SELECT array_agg(owner_address), array_agg(contract_address), array_agg(collection_id),
                array_agg(tokens), array_agg(balance)
         FROM (%s) AS d',
        nft_ownership_delta_sql(TG_OP))
    INTO v_wallets, v_contracts, v_collections, v_tokens, v_balances;
    IF v_wallets IS NULL THEN
        RETURN NULL;
    END IF;

    PERFORM 1
    FROM wallet_collection_mapping AS m
    JOIN unnest(v_wallets, v_contracts) AS d(wallet_address, contract_address)
      ON m.wallet_address = d.wallet_address AND m.contract_address = d.contract_address
    ORDER BY m.wallet_address, m.contract_address
    FOR UPDATE OF m;

    WITH d AS (
        SELECT * FROM unnest(v_wallets, v_contracts, v_collections, v_tokens, v_balances)
            AS d(wallet_address, contract_address, collection_id, tokens, balance)
    ),
    taken_over AS (
        -- A scan row for a key the index now holds: the index's own figures replace the scan's.
        UPDATE wallet_collection_mapping AS m
        SET source = 'index',
            collection_id = d.collection_id,
            num_distinct_tokens = held.tokens,
            total_balance = held.balance,
            last_owned_at = now()
        FROM d
        CROSS JOIN LATERAL (
            SELECT count(*) AS tokens, coalesce(sum(o.balance), 0) AS balance
            FROM nft_ownership AS o
            WHERE o.owner_address = d.wallet_address AND o.collection_id = d.collection_id
        ) AS held
        WHERE m.wallet_address = d.wallet_address AND m.contract_address = d.contract_address
          AND m.source = 'scan' AND held.tokens > 0
    ),
    emptied AS (
        DELETE FROM wallet_collection_mapping AS m
        USING d
        WHERE m.wallet_address = d.wallet_address AND m.contract_address = d.contract_address
          AND m.source = 'index' AND m.num_distinct_tokens + d.tokens <= 0
    ),
    changed AS (
        UPDATE wallet_collection_mapping AS m
        SET num_distinct_tokens = m.num_distinct_tokens + d.tokens,
            total_balance = m.total_balance + d.balance,
            collection_id = d.collection_id,
            last_owned_at = now()
        FROM d
        WHERE m.wallet_address = d.wallet_address AND m.contract_address = d.contract_address
          AND m.source = 'index' AND m.num_distinct_tokens + d.tokens > 0
    )
    INSERT INTO wallet_collection_mapping AS m (
        wallet_address, contract_address, collection_id, num_distinct_tokens, total_balance, source,
        last_owned_at, name, symbol, token_type
    )
    SELECT d.wallet_address, d.contract_address, d.collection_id, d.tokens, d.balance, 'index',
           now(), c.name, c.symbol, c.token_type
    FROM d
    JOIN collections AS c ON c.id = d.collection_id
    WHERE NOT EXISTS (
        SELECT 1 FROM wallet_collection_mapping AS present
        WHERE present.wallet_address = d.wallet_address AND present.contract_address = d.contract_address
    )
    ORDER BY d.wallet_address, d.contract_address
    ON CONFLICT (wallet_address, contract_address) DO UPDATE
    SET source = 'index',
        collection_id = excluded.collection_id,
        last_owned_at = excluded.last_owned_at,
        num_distinct_tokens = CASE
            WHEN m.source = 'index' THEN m.num_distinct_tokens + excluded.num_distinct_tokens
            ELSE (SELECT count(*) FROM nft_ownership AS o
                  WHERE o.owner_address = excluded.wallet_address
                    AND o.collection_id = excluded.collection_id)
        END,
        total_balance = CASE
            WHEN m.source = 'index' THEN m.total_balance + excluded.total_balance
            ELSE (SELECT coalesce(sum(o.balance), 0) FROM nft_ownership AS o
                  WHERE o.owner_address = excluded.wallet_address
                    AND o.collection_id = excluded.collection_id)
        END;
    RETURN NULL;
END
$$;

-- TRUNCATE fires no delete triggers: empty the index-maintained summaries with it.
CREATE OR REPLACE FUNCTION clear_ownership_summaries() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    DELETE FROM user_collections;
    DELETE FROM wallet_collection_mapping WHERE source = 'index';
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS nft_ownership_set_updated_at ON nft_ownership;
CREATE TRIGGER nft_ownership_set_updated_at
    BEFORE UPDATE ON nft_ownership FOR EACH ROW EXECUTE FUNCTION set_updated_at();
DROP TRIGGER IF EXISTS user_collections_set_updated_at ON user_collections;
CREATE TRIGGER user_collections_set_updated_at
    BEFORE UPDATE ON user_collections FOR EACH ROW EXECUTE FUNCTION set_updated_at();
DROP TRIGGER IF EXISTS wallet_collection_mapping_set_updated_at ON wallet_collection_mapping;
CREATE TRIGGER wallet_collection_mapping_set_updated_at
    BEFORE UPDATE ON wallet_collection_mapping FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- A trigger with transition tables serves one event, hence one trigger per event and summary. Triggers
-- of one event fire in name order: user_collections first, then wallet_collection_mapping, in every
-- transaction, which keeps the lock order global.
DROP TRIGGER IF EXISTS nft_ownership_summary_1_user_collections_insert ON nft_ownership;
CREATE TRIGGER nft_ownership_summary_1_user_collections_insert
    AFTER INSERT ON nft_ownership REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION update_user_collection_count();
DROP TRIGGER IF EXISTS nft_ownership_summary_1_user_collections_update ON nft_ownership;
CREATE TRIGGER nft_ownership_summary_1_user_collections_update
    AFTER UPDATE ON nft_ownership REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION update_user_collection_count();
DROP TRIGGER IF EXISTS nft_ownership_summary_1_user_collections_delete ON nft_ownership;
CREATE TRIGGER nft_ownership_summary_1_user_collections_delete
    AFTER DELETE ON nft_ownership REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION update_user_collection_count();
DROP TRIGGER IF EXISTS nft_ownership_summary_2_wallet_mapping_insert ON nft_ownership;
CREATE TRIGGER nft_ownership_summary_2_wallet_mapping_insert
    AFTER INSERT ON nft_ownership REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION update_wallet_collection_mapping();
DROP TRIGGER IF EXISTS nft_ownership_summary_2_wallet_mapping_update ON nft_ownership;
CREATE TRIGGER nft_ownership_summary_2_wallet_mapping_update
    AFTER UPDATE ON nft_ownership REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION update_wallet_collection_mapping();
DROP TRIGGER IF EXISTS nft_ownership_summary_2_wallet_mapping_delete ON nft_ownership;
CREATE TRIGGER nft_ownership_summary_2_wallet_mapping_delete
    AFTER DELETE ON nft_ownership REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION update_wallet_collection_mapping();
DROP TRIGGER IF EXISTS nft_ownership_summary_truncate ON nft_ownership;
CREATE TRIGGER nft_ownership_summary_truncate
    AFTER TRUNCATE ON nft_ownership
    FOR EACH STATEMENT EXECUTE FUNCTION clear_ownership_summaries();

-- Recomputes both summaries from nft_ownership and returns every difference: a missing row, an extra
-- row, wrong figures, or a scan-sourced wallet_collection_mapping row where the index holds the key.
-- No rows = consistent.
CREATE OR REPLACE FUNCTION ownership_summary_differences()
RETURNS TABLE (
    summary          text,
    owner_address    text,
    collection_id    uuid,
    contract_address text,
    expected_tokens  numeric,
    actual_tokens    numeric,
    expected_balance numeric,
    actual_balance   numeric
)
LANGUAGE sql STABLE AS
$$
    WITH expected AS (
        SELECT o.owner_address, o.collection_id, c.contract_address,
               count(*)::numeric AS tokens, sum(o.balance) AS balance
        FROM nft_ownership AS o
        JOIN collections AS c ON c.id = o.collection_id
        GROUP BY o.owner_address, o.collection_id, c.contract_address
    )
    SELECT 'user_collections',
           coalesce(e.owner_address, uc.owner_address),
           coalesce(e.collection_id, uc.collection_id),
           coalesce(e.contract_address, c.contract_address),
           e.tokens, uc.token_count::numeric, e.balance, uc.total_balance
    FROM expected AS e
    FULL JOIN user_collections AS uc
      ON uc.owner_address = e.owner_address AND uc.collection_id = e.collection_id
    LEFT JOIN collections AS c ON c.id = uc.collection_id
    WHERE e.tokens IS DISTINCT FROM uc.token_count::numeric
       OR e.balance IS DISTINCT FROM uc.total_balance
    UNION ALL
    SELECT CASE WHEN m.source = 'scan' THEN 'wallet_collection_mapping (scan row, index holds)'
                ELSE 'wallet_collection_mapping' END,
           coalesce(e.owner_address, m.wallet_address),
           coalesce(e.collection_id, m.collection_id),
           coalesce(e.contract_address, m.contract_address),
           e.tokens, m.num_distinct_tokens, e.balance, m.total_balance
    FROM expected AS e
    FULL JOIN wallet_collection_mapping AS m
      ON m.wallet_address = e.owner_address AND m.contract_address = e.contract_address
    WHERE (e.owner_address IS NULL AND m.source = 'index')
       OR (e.owner_address IS NOT NULL AND (
               m.wallet_address IS NULL
            OR m.source = 'scan'
            OR m.collection_id IS DISTINCT FROM e.collection_id
            OR m.num_distinct_tokens IS DISTINCT FROM e.tokens
            OR m.total_balance IS DISTINCT FROM e.balance))
$$;
