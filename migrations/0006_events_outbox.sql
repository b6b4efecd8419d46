-- 0006: the transactional outbox. An event is written in the same transaction as the data change it
-- describes; the writer publishes it right after commit and the relay publishes whatever is left.
CREATE TABLE IF NOT EXISTS cache_events_outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    detail_type  text        NOT NULL CHECK (detail_type ~ '^[a-z]+(\.[a-z_]+)+$'),
    detail       jsonb       NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The relay and the metrics read only what is still unpublished, oldest first.
CREATE INDEX IF NOT EXISTS cache_events_outbox_unpublished
    ON cache_events_outbox (id) WHERE published_at IS NULL;

DROP TRIGGER IF EXISTS cache_events_outbox_set_updated_at ON cache_events_outbox;
CREATE TRIGGER cache_events_outbox_set_updated_at
    BEFORE UPDATE ON cache_events_outbox
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
