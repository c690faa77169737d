-- The durable job queue: instances claim jobs nobody holds (PENDING, or a
-- lease that expired with its instance) with FOR UPDATE SKIP LOCKED, hold a
-- lease they renew while the job runs, and wake on NOTIFY when a job is
-- created (a periodic poll covers a missed notification).
CREATE INDEX IF NOT EXISTS import_jobs_claimable_idx ON import_jobs (created_at)
    WHERE status IN ('PENDING', 'RUNNING');

CREATE OR REPLACE FUNCTION ferry_notify_job() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ferry_jobs', NEW.id::text);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS import_jobs_notify ON import_jobs;
CREATE TRIGGER import_jobs_notify AFTER INSERT ON import_jobs
    FOR EACH ROW WHEN (NEW.status = 'PENDING' AND NEW.lease_owner IS NULL)
    EXECUTE FUNCTION ferry_notify_job();
