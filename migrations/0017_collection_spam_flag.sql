-- 0017: whether Alchemy flags a collection as spam (issue #18), served as the collection metadata's isSpam.
-- Idempotent. Rows stored before it read false until their next metadata refresh or ingestion.
ALTER TABLE collections ADD COLUMN IF NOT EXISTS is_spam boolean NOT NULL DEFAULT false;
