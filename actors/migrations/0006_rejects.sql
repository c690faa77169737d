-- A job's rejected rows, kept in the database while the job runs: whichever
-- instance finishes the job (after a crash, another one) writes the whole
-- rejects file from them. `line` is the rejects file's line for the row, as
-- bytes (a rejected row need not be UTF-8), and `position` its line in a
-- CSV file or its row in a Parquet file: a resumed job saving a reject
-- again changes nothing. The rows go when the job finishes.
CREATE TABLE IF NOT EXISTS import_rejects (
    job_id   uuid   NOT NULL REFERENCES import_jobs (id) ON DELETE CASCADE,
    position bigint NOT NULL,
    line     bytea  NOT NULL,
    PRIMARY KEY (job_id, position)
);

-- The rejects file's header line (the position's name, `reason`, then the
-- source's columns), and which of its columns holds a row's reference id:
-- the status event lists the rejected rows' ids from it.
ALTER TABLE import_jobs ADD COLUMN IF NOT EXISTS rejects_header bytea;
ALTER TABLE import_jobs ADD COLUMN IF NOT EXISTS rejects_key integer;
