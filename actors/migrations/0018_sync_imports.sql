-- A sync import: after its file is loaded, the group holds exactly the
-- file's rows. The keys each batch staged are kept here, in the batch's
-- transaction, until the job deletes what it did not see (or ends).
-- UNLOGGED: they are written once and read once, so they skip the WAL; a
-- server crash empties them, which the sync sees (fewer keys than its
-- checkpoint committed) and fails on rather than delete.
ALTER TABLE jobs
    ADD COLUMN import_mode text NOT NULL DEFAULT 'upsert',
    ADD COLUMN sync_force boolean NOT NULL DEFAULT false,
    ADD COLUMN deleted_rows bigint NOT NULL DEFAULT 0;

CREATE UNLOGGED TABLE IF NOT EXISTS sync_seen_nodes (
    job_id       uuid NOT NULL,
    reference_id text NOT NULL
);

CREATE UNLOGGED TABLE IF NOT EXISTS sync_seen_matches (
    job_id                 uuid NOT NULL,
    participant_id         text NOT NULL,
    matched_participant_id text NOT NULL
);
