-- Reference-list imports (seed 004 UC-2): how a job's input is laid out, and
-- the ids themselves when they came inline (a Kafka payload, `--refs`), so
-- that a restarted job reads them again from here.
ALTER TABLE import_jobs
    ADD COLUMN IF NOT EXISTS format text NOT NULL DEFAULT 'csv'
        CHECK (format IN ('csv', 'refs')),
    ADD COLUMN IF NOT EXISTS reference_ids text[];
