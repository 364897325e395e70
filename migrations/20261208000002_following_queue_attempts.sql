-- A pair whose scoring fails (a bad value, a bug) no longer stalls the queue: the batch it was
-- in is put back with `attempts` counted and a backoff in `queued_at`; pairs that have failed are
-- then scored one per transaction, after every fresh pair, so one bad pair delays only itself.
ALTER TABLE sigint.following_queue ADD COLUMN attempts integer NOT NULL DEFAULT 0;
