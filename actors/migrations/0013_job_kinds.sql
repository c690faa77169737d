-- The job kind is the seam: each kind reads and checks its own part of a
-- row (and an unknown kind is an error when read), so the table no longer
-- lists the kinds, and a new kind needs no migration of its own.
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_kind_check;
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_work_check;

-- A users export is a kind of its own: `users_file` (a COST_BASED group's
-- file) or `users_refs` (a NON_COST_BASED group's ids), its spec the
-- export it runs and what it delivers. Its file's columns, when none were
-- configured, are every metadata key its rows have (`metadata.*`), named
-- by the key alone.
UPDATE jobs SET
    kind = CASE spec -> 'users' ->> 'group_type'
               WHEN 'NON_COST_BASED' THEN 'users_refs' ELSE 'users_file' END,
    spec = jsonb_build_object(
        'export',
        (spec - 'users')
            || jsonb_build_object('bare_metadata_names', true)
            || CASE WHEN coalesce((spec -> 'users' ->> 'all_keys')::boolean, false)
                    THEN jsonb_build_object('fields', (spec -> 'fields') || '["metadata.*"]'::jsonb)
                    ELSE '{}'::jsonb END,
        'users', (spec -> 'users') - 'all_keys')
WHERE kind = 'export' AND spec ? 'users';

-- What a job's end leaves to do outside the database (a failed export's
-- files to delete) is done when this is set; until then the sweeper tries
-- again, and keeps the row. Jobs that ended before had it done.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS after_end_at timestamptz;
UPDATE jobs SET after_end_at = coalesce(finished_at, now())
WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND after_end_at IS NULL;
CREATE INDEX IF NOT EXISTS jobs_after_end_due_idx ON jobs (finished_at)
    WHERE after_end_at IS NULL AND status IN ('COMPLETED', 'FAILED', 'CANCELLED');

-- The exports as SQL readers see them, users exports among them.
CREATE OR REPLACE VIEW exports AS
SELECT id, domain_id, status, coalesce(spec -> 'export', spec) ->> 'object' AS exported_object,
       coalesce(spec -> 'export', spec) AS spec, result,
       processed_rows AS rows, total_rows AS total, failure_reason, attempts,
       created_at, started_at, finished_at
FROM jobs WHERE kind IN ('export', 'users_file', 'users_refs');
