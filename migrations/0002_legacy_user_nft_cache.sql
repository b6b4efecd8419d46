-- 0002: the predecessor's JSONB wallet -> contracts cache, exactly as it was, so that 0004 can migrate
-- it and 0005 can prove nothing was lost before dropping it. Its data is messy on purpose: wallet
-- addresses in any case, duplicate rows per wallet (no unique constraint), and `contracts` holding a JSON
-- array of objects such as {"address": "0xAbC…", "name": "…", "symbol": "…", "tokenType": "ERC721",
-- "totalBalance": "3", "numDistinctTokensOwned": "2", "isSpam": false} whose numbers may be strings,
-- huge, or garbage.
CREATE TABLE IF NOT EXISTS user_nft_cache (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fid            bigint,
    wallet_address text NOT NULL,
    contracts      jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

DROP TRIGGER IF EXISTS user_nft_cache_set_updated_at ON user_nft_cache;
CREATE TRIGGER user_nft_cache_set_updated_at
    BEFORE UPDATE ON user_nft_cache FOR EACH ROW EXECUTE FUNCTION set_updated_at();
