-- 0015: notifications that one account cannot stall for everyone (issue #15).
-- Idempotent: every object is created only if missing or replaced in place.

-- 1. A claimed token is leased (claimed_until), no longer counted: Farcaster's per-token limits
--    (last_used_at, day_count) count only what a client accepted. The lease keeps two senders from
--    taking one token at once, and ends by itself if a sender dies mid-send.
ALTER TABLE notification_tokens ADD COLUMN IF NOT EXISTS claimed_until timestamptz;

-- 2. A fid keeps a bounded number of enabled client URLs: enabling one more supersedes its oldest.
ALTER TABLE notification_tokens DROP CONSTRAINT IF EXISTS notification_tokens_disabled_reason_check;
ALTER TABLE notification_tokens ADD CONSTRAINT notification_tokens_disabled_reason_check
    CHECK (disabled_reason IN ('miniapp_removed', 'notifications_disabled', 'invalid_token', 'superseded'));

-- 3. A client URL that timed out or failed is backed off: nothing is claimed for it until `until`
--    (30 s doubling per consecutive failure, up to 1 h); its first answer clears the row.
CREATE TABLE IF NOT EXISTS notification_url_backoff (
    url        text        PRIMARY KEY CHECK (length(url) BETWEEN 1 AND 1024),
    failures   integer     NOT NULL CHECK (failures > 0),
    until      timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

DROP TRIGGER IF EXISTS notification_url_backoff_set_updated_at ON notification_url_backoff;
CREATE TRIGGER notification_url_backoff_set_updated_at
    BEFORE UPDATE ON notification_url_backoff FOR EACH ROW EXECUTE FUNCTION set_updated_at();
