-- Data contracts: what a group's files must hold (a JSON Schema subset per
-- target, see the README), read once per import attempt.
ALTER TABLE matching_groups ADD COLUMN contract jsonb;

-- Schema drift: the columns of each group's last completed import of each
-- target, which the next import's are compared with.
CREATE TABLE IF NOT EXISTS group_columns (
    domain_id   uuid NOT NULL,
    group_id    uuid NOT NULL,
    target      text NOT NULL,
    columns     text[] NOT NULL,
    job_id      uuid NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain_id, group_id, target)
);
