-- ferry serve: jobs that arrive from Kafka or the HTTP API, their status
-- events, and the API keys that may see them.

-- Where a job's terminal status event goes (NULL: nobody is told, as for a
-- `ferry import`), and where the request came from (topic, partition,
-- offset; or the API).
ALTER TABLE import_jobs ADD COLUMN IF NOT EXISTS status_topic text;
ALTER TABLE import_jobs ADD COLUMN IF NOT EXISTS origin jsonb;

-- The outbox: a job's terminal update and its status event are written in
-- one statement; the StatusPublisher sends unsent rows in id order and marks
-- them sent. The payload is text so the bytes sent are the bytes written.
CREATE TABLE IF NOT EXISTS status_outbox (
    id          bigserial PRIMARY KEY,
    job_id      uuid NOT NULL,
    topic       text NOT NULL,
    message_key text NOT NULL,
    payload     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text
);
CREATE INDEX IF NOT EXISTS status_outbox_unsent_idx ON status_outbox (id) WHERE sent_at IS NULL;

-- One trigger function announces a new row on the channel its trigger
-- names; the job queue's trigger (migration 4) moves to it too.
CREATE OR REPLACE FUNCTION ferry_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], NEW.id::text);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS status_outbox_notify ON status_outbox;
CREATE TRIGGER status_outbox_notify AFTER INSERT ON status_outbox
    FOR EACH ROW EXECUTE FUNCTION ferry_notify('ferry_outbox');

DROP TRIGGER IF EXISTS import_jobs_notify ON import_jobs;
CREATE TRIGGER import_jobs_notify AFTER INSERT ON import_jobs
    FOR EACH ROW WHEN (NEW.status = 'PENDING' AND NEW.lease_owner IS NULL)
    EXECUTE FUNCTION ferry_notify('ferry_jobs');
DROP FUNCTION IF EXISTS ferry_notify_job();

-- API keys: each belongs to one domain and sees only that domain's jobs.
-- Only the SHA-256 of a key is stored.
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash   bytea PRIMARY KEY,
    domain_id  uuid NOT NULL,
    name       text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS import_jobs_domain_created_idx ON import_jobs (domain_id, created_at DESC);
