-- 0001: the core catalogue tables (collections, nfts, traits, Farcaster users) and the helpers every
-- later migration relies on: set_updated_at() for the updated_at columns and the address checks.
-- Idempotent: every object is created only if missing or replaced in place.

CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Every element a lower-case 0x address (an empty array passes; NULL elements do not).
CREATE OR REPLACE FUNCTION is_lower_eth_address_array(addresses text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$
    SELECT NOT EXISTS (
        SELECT 1 FROM unnest(addresses) AS a(address)
        WHERE a.address IS NULL OR a.address !~ '^0x[0-9a-f]{40}$'
    )
$$;

CREATE TABLE IF NOT EXISTS collections (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    contract_address       text NOT NULL UNIQUE CHECK (contract_address ~ '^0x[0-9a-f]{40}$'),
    name                   text,
    symbol                 text,
    token_type             text NOT NULL DEFAULT 'UNKNOWN'
                               CHECK (token_type IN ('ERC721', 'ERC1155', 'UNKNOWN')),
    total_supply           numeric(78, 0) CHECK (total_supply >= 0),
    image_url              text,
    description            text,
    verified               boolean NOT NULL DEFAULT false,
    last_refresh_at        timestamptz,
    refresh_cooldown_until timestamptz,
    ingestion_state        text NOT NULL DEFAULT 'pending'
                               CHECK (ingestion_state IN ('pending', 'queued', 'running', 'complete', 'failed')),
    nfts_indexed           integer NOT NULL DEFAULT 0 CHECK (nfts_indexed >= 0),
    owners_indexed         integer NOT NULL DEFAULT 0 CHECK (owners_indexed >= 0),
    ingestion_error        text,
    ingestion_started_at   timestamptz,
    ingestion_finished_at  timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- The primary key (collection_id, token_id) serves keyset pagination by numeric token id.
-- owner_address/last_owner_check_at are the legacy ownership columns that 0004 moves into
-- nft_ownership; legacy data holds mixed-case addresses, so they are deliberately unchecked.
CREATE TABLE IF NOT EXISTS nfts (
    collection_id       uuid NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    token_id            numeric(78, 0) NOT NULL CHECK (token_id >= 0),
    title               text,
    description         text,
    image_url           text,
    thumbnail_url       text,
    metadata            jsonb,
    attributes          jsonb,
    metadata_error      text,
    owner_address       text,
    last_owner_check_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, token_id)
);

-- Trait facets: how many tokens of a collection carry each (trait_type, trait_value).
CREATE TABLE IF NOT EXISTS collection_traits (
    collection_id uuid NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    trait_type    text NOT NULL,
    trait_value   text NOT NULL,
    token_count   integer NOT NULL CHECK (token_count >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, trait_type, trait_value)
);

-- Per-token traits: "tokens with X=a AND Y=b" is an intersection of two primary-key range scans,
-- each already ordered by token_id.
CREATE TABLE IF NOT EXISTS nft_traits (
    collection_id uuid NOT NULL,
    token_id      numeric(78, 0) NOT NULL,
    trait_type    text NOT NULL,
    trait_value   text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, trait_type, trait_value, token_id),
    FOREIGN KEY (collection_id, token_id) REFERENCES nfts (collection_id, token_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS nft_traits_token ON nft_traits (collection_id, token_id);

CREATE TABLE IF NOT EXISTS fc_users (
    fid                    bigint PRIMARY KEY CHECK (fid > 0),
    username               text,
    display_name           text,
    pfp_url                text,
    custody_address        text CHECK (custody_address ~ '^0x[0-9a-f]{40}$'),
    verified_eth_addresses text[] NOT NULL DEFAULT '{}'
                               CHECK (is_lower_eth_address_array(verified_eth_addresses)),
    follower_count         integer CHECK (follower_count >= 0),
    following_count        integer CHECK (following_count >= 0),
    fetched_at             timestamptz NOT NULL DEFAULT now(),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
-- "Which Farcaster user verified this wallet" is an array containment lookup.
CREATE INDEX IF NOT EXISTS fc_users_verified_eth_addresses ON fc_users USING gin (verified_eth_addresses);
CREATE INDEX IF NOT EXISTS fc_users_custody_address ON fc_users (custody_address);

DROP TRIGGER IF EXISTS collections_set_updated_at ON collections;
CREATE TRIGGER collections_set_updated_at
    BEFORE UPDATE ON collections FOR EACH ROW EXECUTE FUNCTION set_updated_at();
DROP TRIGGER IF EXISTS nfts_set_updated_at ON nfts;
CREATE TRIGGER nfts_set_updated_at
    BEFORE UPDATE ON nfts FOR EACH ROW EXECUTE FUNCTION set_updated_at();
DROP TRIGGER IF EXISTS collection_traits_set_updated_at ON collection_traits;
CREATE TRIGGER collection_traits_set_updated_at
    BEFORE UPDATE ON collection_traits FOR EACH ROW EXECUTE FUNCTION set_updated_at();
DROP TRIGGER IF EXISTS nft_traits_set_updated_at ON nft_traits;
CREATE TRIGGER nft_traits_set_updated_at
    BEFORE UPDATE ON nft_traits FOR EACH ROW EXECUTE FUNCTION set_updated_at();
DROP TRIGGER IF EXISTS fc_users_set_updated_at ON fc_users;
CREATE TRIGGER fc_users_set_updated_at
    BEFORE UPDATE ON fc_users FOR EACH ROW EXECUTE FUNCTION set_updated_at();
