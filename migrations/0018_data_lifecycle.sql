-- 0018: indexes that make the data-lifecycle job's deletes cheap (such_market/db/lifecycle.py): each batch
-- finds its old rows by a range scan instead of reading the table. Idempotent.
-- Built in the migration's transaction (CREATE INDEX CONCURRENTLY cannot run in one): each table's writes
-- wait for its index; measured on 20k transfers' outbox (40k rows) it takes well under a second.

-- Published outbox events, by when they were published (unpublished rows are never pruned).
CREATE INDEX IF NOT EXISTS cache_events_outbox_published
    ON cache_events_outbox (published_at) WHERE published_at IS NOT NULL;

-- Receipts of turning-off events (an enable's receipt is kept: it is what stops a replay reviving a token).
CREATE INDEX IF NOT EXISTS notification_webhook_events_turning_off
    ON notification_webhook_events (received_at) WHERE event IN ('miniapp_removed', 'notifications_disabled');

-- Every request sent to a client, by when.
CREATE INDEX IF NOT EXISTS notification_attempts_attempted ON notification_attempts (attempted_at);

-- Settled deliveries (sent, invalid, failed, expired: never touched again), by their last change.
CREATE INDEX IF NOT EXISTS notification_deliveries_settled
    ON notification_deliveries (updated_at) WHERE state <> 'pending';

-- Queued notifications by age (a collecting digest is never pruned).
CREATE INDEX IF NOT EXISTS notifications_queued_created ON notifications (created_at) WHERE state = 'queued';
