-- Exports are jobs of the same queue: their request in `spec`, what they
-- made in `result`, their progress in processed_rows / total_rows. The
-- import columns are NULL for them.
ALTER TABLE jobs
    ALTER COLUMN group_id DROP NOT NULL,
    ALTER COLUMN group_key DROP NOT NULL,
    ALTER COLUMN node_type DROP NOT NULL,
    ALTER COLUMN source DROP NOT NULL,
    ALTER COLUMN format DROP NOT NULL,
    ALTER COLUMN format DROP DEFAULT,
    ADD COLUMN IF NOT EXISTS spec jsonb,
    ADD COLUMN IF NOT EXISTS result jsonb;

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('nodes', 'matches', 'export'));
ALTER TABLE jobs ADD CONSTRAINT jobs_work_check CHECK (
    CASE WHEN kind = 'export' THEN spec IS NOT NULL
         ELSE group_id IS NOT NULL AND group_key IS NOT NULL AND node_type IS NOT NULL
              AND source IS NOT NULL AND format IS NOT NULL END);

-- The exports as SQL readers see them (the API's export entity).
CREATE OR REPLACE VIEW exports AS
SELECT id, domain_id, status, spec ->> 'object' AS exported_object, spec, result,
       processed_rows AS rows, total_rows AS total, failure_reason, attempts,
       created_at, started_at, finished_at
FROM jobs WHERE kind = 'export';
