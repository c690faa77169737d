-- Webhooks of exports: a delivery is queued with the export's terminal
-- update (in the same statement, as the outbox's event), then POSTed by the
-- WebhookSender with retries; every attempt is kept.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              bigserial PRIMARY KEY,
    job_id          uuid NOT NULL,
    url             text NOT NULL,
    payload         text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    failed_at       timestamptz
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX IF NOT EXISTS webhook_deliveries_job_idx ON webhook_deliveries (job_id);

CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    status      integer,
    error       text,
    millis      integer NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

DROP TRIGGER IF EXISTS webhook_deliveries_notify ON webhook_deliveries;
CREATE TRIGGER webhook_deliveries_notify AFTER INSERT ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION ferry_notify('ferry_webhooks');

-- A finished export's files are deleted after exports.retention: the
-- export then says so.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS expired_at timestamptz;
