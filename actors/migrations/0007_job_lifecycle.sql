-- One job lifecycle for every kind of job: the queue is `jobs` (it was
-- `import_jobs`), a job may be CANCELLED, and finished jobs are swept after
-- `jobs.retention`.
ALTER TABLE import_jobs RENAME TO jobs;
ALTER INDEX import_jobs_pkey RENAME TO jobs_pkey;
ALTER INDEX import_jobs_idempotency_key_key RENAME TO jobs_idempotency_key_key;
ALTER INDEX import_jobs_status_created_idx RENAME TO jobs_status_created_idx;
ALTER INDEX import_jobs_claimable_idx RENAME TO jobs_claimable_idx;
ALTER INDEX import_jobs_domain_created_idx RENAME TO jobs_domain_created_idx;
ALTER TRIGGER import_jobs_notify ON jobs RENAME TO jobs_notify;

ALTER TABLE jobs DROP CONSTRAINT import_jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED'));
ALTER TABLE jobs RENAME CONSTRAINT import_jobs_format_check TO jobs_format_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('nodes', 'matches'));

-- The retention sweep: finished jobs oldest first, and each one's events.
CREATE INDEX IF NOT EXISTS jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS status_outbox_job_idx ON status_outbox (job_id);
