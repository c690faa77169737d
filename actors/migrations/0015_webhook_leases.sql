-- A webhook delivery is claimed with a lease of its own (leased_until,
-- cleared when its attempt is recorded), and deliveries in flight are
-- bounded per domain and per host across every instance: the claim counts
-- the leased ones. Deliveries queued before this migration get their
-- export's domain and their URL's host.
ALTER TABLE webhook_deliveries ADD COLUMN IF NOT EXISTS domain_id uuid;
ALTER TABLE webhook_deliveries ADD COLUMN IF NOT EXISTS host text;
ALTER TABLE webhook_deliveries ADD COLUMN IF NOT EXISTS leased_until timestamptz;
UPDATE webhook_deliveries d SET domain_id = j.domain_id
FROM jobs j WHERE j.id = d.job_id AND d.domain_id IS NULL;
UPDATE webhook_deliveries
SET host = lower(substring(url FROM '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?(\[[^]]*\]|[^/?#:]*)'))
WHERE host IS NULL;
CREATE INDEX IF NOT EXISTS webhook_deliveries_leased_idx ON webhook_deliveries (leased_until)
    WHERE leased_until IS NOT NULL;
