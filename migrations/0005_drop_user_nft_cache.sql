-- 0005: drop the legacy user_nft_cache, but only after checking that 0004 left nothing behind: every
-- (wallet, contract) pair with valid addresses in the cache has a wallet_collection_mapping row or a
-- legacy_migration_rejects record, and every legacy nfts owner is in nft_ownership or recorded as a
-- reject. Otherwise it raises, the runner rolls back, and 0005 stays unapplied. Idempotent: nothing to
-- do once the table is gone.
DO $drop$
DECLARE
    v_missing_pairs  bigint;
    v_missing_owners bigint;
BEGIN
    IF to_regclass('user_nft_cache') IS NULL THEN
        RETURN;
    END IF;

    SELECT count(*) INTO v_missing_pairs
    FROM (
        SELECT DISTINCT legacy_normalize_address(u.wallet_address) AS wallet_address,
                        legacy_normalize_address(e.entry ->> 'address') AS contract_address
        FROM user_nft_cache AS u
        CROSS JOIN LATERAL jsonb_array_elements(u.contracts) WITH ORDINALITY AS e(entry, ordinality)
        WHERE jsonb_typeof(u.contracts) = 'array'
          AND jsonb_typeof(e.entry) = 'object'
          AND legacy_normalize_address(u.wallet_address) IS NOT NULL
          AND legacy_normalize_address(e.entry ->> 'address') IS NOT NULL
          AND NOT EXISTS (
              SELECT 1 FROM legacy_migration_rejects AS r
              WHERE r.source = 'user_nft_cache'
                AND r.source_ref IN (u.id::text, u.id || ':' || e.ordinality)
          )
    ) AS pair
    WHERE NOT EXISTS (
        SELECT 1 FROM wallet_collection_mapping AS m
        WHERE m.wallet_address = pair.wallet_address AND m.contract_address = pair.contract_address
    );

    SELECT count(*) INTO v_missing_owners
    FROM nfts AS n
    WHERE legacy_normalize_address(n.owner_address) IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM nft_ownership AS o
          WHERE o.collection_id = n.collection_id AND o.token_id = n.token_id
            AND o.owner_address = legacy_normalize_address(n.owner_address)
      )
      AND NOT EXISTS (
          SELECT 1 FROM legacy_migration_rejects AS r
          WHERE r.source = 'nfts' AND r.source_ref = n.collection_id || ':' || n.token_id
      );

    IF v_missing_pairs > 0 OR v_missing_owners > 0 THEN
        RAISE EXCEPTION 'refusing to drop user_nft_cache: % wallet/contract pairs and % token owners are not in the normalized tables',
            v_missing_pairs, v_missing_owners
            USING HINT = 'run the 0004 migration SQL again (it is idempotent), then migrate again';
    END IF;

    DROP TABLE user_nft_cache;
END
$drop$;
