-- Seed 003: match suggestions from the matching engine, one row per
-- (participant, suggested participant) of a group. The key holds the domain
-- too, as `nodes` does: a group key that is not a UUID maps to the same
-- UUIDv5 in every domain, and one tenant must never overwrite another's rows.
CREATE TABLE IF NOT EXISTS match_suggestions (
    group_id               uuid NOT NULL,
    domain_id              uuid NOT NULL,
    participant_id         varchar(255) NOT NULL,
    matched_participant_id varchar(255) NOT NULL,
    compatibility_score    double precision,
    rank                   integer,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT match_suggestions_pkey
        PRIMARY KEY (group_id, domain_id, participant_id, matched_participant_id)
);

-- Parquet is a job input format now.
ALTER TABLE import_jobs DROP CONSTRAINT IF EXISTS import_jobs_format_check;
ALTER TABLE import_jobs ADD CONSTRAINT import_jobs_format_check
    CHECK (format IN ('csv', 'refs', 'parquet'));
