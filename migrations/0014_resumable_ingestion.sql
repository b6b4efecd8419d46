-- 0014: ingestions that fail are retried with backoff and resume where they stopped (issue 9, item 6).
-- Idempotent: every column and index is created only if missing; the backfill touches only rows it has
-- not filled yet.
--
-- ingestion_completed_at    when an ingestion of the collection last completed. NULL: no run ever did,
--                           so what the tables hold is a partial index (answers say indexing: true and
--                           are cached only briefly).
-- ingestion_attempts        failed runs in a row (reset by a completed run or a new request).
-- ingestion_retry_at        when the retry sweep (collections.ingestion.requeue_due_ingestions, run by the
--                           outbox relay every minute) queues the failed run again; NULL: no retry due.
-- ingestion_resume_key      getNFTsForContract's page key after the last token batch a run committed:
--                           the next run starts its token listing there.
-- ingestion_listed_through  the highest token id those committed batches listed; tokens at or below it
--                           count as listed for the resumed run.
ALTER TABLE collections ADD COLUMN IF NOT EXISTS ingestion_completed_at timestamptz;
ALTER TABLE collections ADD COLUMN IF NOT EXISTS ingestion_attempts integer NOT NULL DEFAULT 0;
ALTER TABLE collections ADD COLUMN IF NOT EXISTS ingestion_retry_at timestamptz;
ALTER TABLE collections ADD COLUMN IF NOT EXISTS ingestion_resume_key text;
ALTER TABLE collections ADD COLUMN IF NOT EXISTS ingestion_listed_through numeric(78, 0);

-- Collections ingested before this migration: their last finish was a completion.
UPDATE collections
SET ingestion_completed_at = coalesce(ingestion_finished_at, updated_at)
WHERE ingestion_state = 'complete' AND ingestion_completed_at IS NULL;

-- The retry sweep reads the due rows, oldest first: a small partial index (only failed runs with a retry).
CREATE INDEX IF NOT EXISTS collections_ingestion_retry_due
    ON collections (ingestion_retry_at) WHERE ingestion_retry_at IS NOT NULL;
