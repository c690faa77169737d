-- A job's rejected rows, kept in the database while the job runs: whichever
-- instance finishes the job (after a crash, another one) writes the whole
-- rejects file from them. `line` is the rejects file's line for the row, as
-- bytes (a rejected row need not be UTF-8), `key` the row's reference id
-- (trimmed; NULL when blank) for the status event's failedList, and
-- `position` its line in a CSV file or its row in a Parquet file: a resumed
-- job saving a reject again changes nothing. The rows go once the job's
-- rejects file holds them.
CREATE TABLE IF NOT EXISTS import_rejects (
    job_id   uuid   NOT NULL REFERENCES import_jobs (id) ON DELETE CASCADE,
    position bigint NOT NULL,
    line     bytea  NOT NULL,
    key      bytea,
    PRIMARY KEY (job_id, position)
);

-- The rejects file's header line: the position's name, `reason`, then the
-- source's columns.
ALTER TABLE import_jobs ADD COLUMN IF NOT EXISTS rejects_header bytea;
