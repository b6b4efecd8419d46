-- 0013: Farcaster mini-app notifications (SPEC §8): durable tokens, the signed events received, the
-- notifications composed, one delivery per (notification, token) and every attempt to deliver.
-- Idempotent: every object is created only if missing or replaced in place.

-- 1. The notification details a Farcaster client gave us: one row per (fid, client url). A later
--    notifications_enabled/miniapp_added replaces the token and re-enables the row; removed/disabled and
--    the client's invalidTokens disable it. The rate-limit columns follow Farcaster's per-token limits
--    (1 per 30 s, 100 per day): the sender never picks a token they would refuse.
CREATE TABLE IF NOT EXISTS notification_tokens (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fid                bigint      NOT NULL CHECK (fid > 0),
    url                text        NOT NULL CHECK (length(url) BETWEEN 1 AND 1024),
    token              text        NOT NULL CHECK (length(token) BETWEEN 1 AND 1024),
    app_fid            bigint      CHECK (app_fid > 0),
    enabled            boolean     NOT NULL DEFAULT true,
    added_at           timestamptz NOT NULL DEFAULT now(),
    disabled_at        timestamptz,
    disabled_reason    text        CHECK (disabled_reason IN ('miniapp_removed', 'notifications_disabled',
                                                               'invalid_token')),
    last_used_at       timestamptz,
    day_started_at     timestamptz,
    day_count          integer     NOT NULL DEFAULT 0 CHECK (day_count >= 0),
    rate_limited_until timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (fid, url),
    CHECK (enabled = (disabled_at IS NULL))
);
CREATE INDEX IF NOT EXISTS notification_tokens_enabled ON notification_tokens (fid) WHERE enabled;

DROP TRIGGER IF EXISTS notification_tokens_set_updated_at ON notification_tokens;
CREATE TRIGGER notification_tokens_set_updated_at
    BEFORE UPDATE ON notification_tokens FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- 2. Every verified mini-app event, keyed by the hash of its signed envelope: a replay is recognized
--    and changes nothing.
CREATE TABLE IF NOT EXISTS notification_webhook_events (
    envelope_sha256 bytea       PRIMARY KEY CHECK (length(envelope_sha256) = 32),
    fid             bigint      NOT NULL CHECK (fid > 0),
    app_fid         bigint      NOT NULL CHECK (app_fid > 0),
    event           text        NOT NULL CHECK (event IN ('miniapp_added', 'miniapp_removed',
                                                          'notifications_enabled', 'notifications_disabled')),
    received_at     timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

DROP TRIGGER IF EXISTS notification_webhook_events_set_updated_at ON notification_webhook_events;
CREATE TRIGGER notification_webhook_events_set_updated_at
    BEFORE UPDATE ON notification_webhook_events FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- 3. A notification: an announcement (for many fids), or a transfer digest (for one fid) that collects
--    every transfer of the fid's wallets until send_after, so a burst becomes one notification.
--    notification_id is what the clients deduplicate on: stable, so a resend is never shown twice.
CREATE TABLE IF NOT EXISTS notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id text        NOT NULL UNIQUE CHECK (length(notification_id) BETWEEN 1 AND 128),
    kind            text        NOT NULL CHECK (kind IN ('transfer', 'announcement')),
    fid             bigint      CHECK (fid > 0),
    state           text        NOT NULL CHECK (state IN ('collecting', 'queued')),
    send_after      timestamptz NOT NULL DEFAULT now(),
    title           text        CHECK (char_length(title) BETWEEN 1 AND 32),
    body            text        CHECK (char_length(body) BETWEEN 1 AND 128),
    target_url      text        CHECK (length(target_url) BETWEEN 1 AND 1024),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (state = 'collecting' OR (title IS NOT NULL AND body IS NOT NULL AND target_url IS NOT NULL)),
    CHECK (kind = 'announcement' OR fid IS NOT NULL)
);
-- One open digest per fid: concurrent transfer events of one fid all land in it.
CREATE UNIQUE INDEX IF NOT EXISTS notifications_one_collecting_digest
    ON notifications (fid) WHERE kind = 'transfer' AND state = 'collecting';
CREATE INDEX IF NOT EXISTS notifications_collecting_due
    ON notifications (send_after) WHERE state = 'collecting';

DROP TRIGGER IF EXISTS notifications_set_updated_at ON notifications;
CREATE TRIGGER notifications_set_updated_at
    BEFORE UPDATE ON notifications FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- 4. The transfers a digest collected, one per (event, fid): a redelivered event is recognized here.
CREATE TABLE IF NOT EXISTS notification_transfers (
    event_id         uuid        NOT NULL,
    fid              bigint      NOT NULL CHECK (fid > 0),
    notification_pk  bigint      NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    direction        text        NOT NULL CHECK (direction IN ('received', 'sent')),
    contract_address text        NOT NULL CHECK (is_evm_address(contract_address)),
    token_id         numeric(78, 0) NOT NULL CHECK (token_id >= 0),
    counterparty     text        NOT NULL CHECK (is_evm_address(counterparty)),
    block_number     bigint      NOT NULL CHECK (block_number >= 0),
    log_index        integer     NOT NULL CHECK (log_index >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, fid)
);
CREATE INDEX IF NOT EXISTS notification_transfers_notification ON notification_transfers (notification_pk);

DROP TRIGGER IF EXISTS notification_transfers_set_updated_at ON notification_transfers;
CREATE TRIGGER notification_transfers_set_updated_at
    BEFORE UPDATE ON notification_transfers FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- 5. One delivery per (notification, token): the durable queue of the sender. A pending delivery is sent
--    once next_attempt_at has passed and its token's rate limits allow; rate-limited and failed sends
--    move next_attempt_at on (backoff), so nothing is lost and nothing is spammed.
CREATE TABLE IF NOT EXISTS notification_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_pk bigint      NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    token_pk        bigint      NOT NULL REFERENCES notification_tokens (id) ON DELETE CASCADE,
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'sent', 'invalid', 'failed', 'expired')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_outcome    text,
    sent_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (notification_pk, token_pk)
);
CREATE INDEX IF NOT EXISTS notification_deliveries_due
    ON notification_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS notification_deliveries_token ON notification_deliveries (token_pk);

DROP TRIGGER IF EXISTS notification_deliveries_set_updated_at ON notification_deliveries;
CREATE TRIGGER notification_deliveries_set_updated_at
    BEFORE UPDATE ON notification_deliveries FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- 6. Every request sent to a client, with what it answered (for the admin to see).
CREATE TABLE IF NOT EXISTS notification_attempts (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_pk    bigint      NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    url                text        NOT NULL,
    tokens             integer     NOT NULL CHECK (tokens BETWEEN 1 AND 100),
    outcome            text        NOT NULL CHECK (outcome IN ('answered', 'rate_limited', 'unavailable',
                                                               'rejected')),
    status             integer,
    successful         integer     NOT NULL DEFAULT 0 CHECK (successful >= 0),
    invalid            integer     NOT NULL DEFAULT 0 CHECK (invalid >= 0),
    rate_limited       integer     NOT NULL DEFAULT 0 CHECK (rate_limited >= 0),
    failed             integer     NOT NULL DEFAULT 0 CHECK (failed >= 0),
    error              text,
    attempted_at       timestamptz NOT NULL DEFAULT now(),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS notification_attempts_notification ON notification_attempts (notification_pk, id);

DROP TRIGGER IF EXISTS notification_attempts_set_updated_at ON notification_attempts;
CREATE TRIGGER notification_attempts_set_updated_at
    BEFORE UPDATE ON notification_attempts FOR EACH ROW EXECUTE FUNCTION set_updated_at();
