-- A digest of each keyed request, kept with its idempotency key: the same
-- key with another request is a conflict (the API answers 409), not a
-- retry that silently gets the first job.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS request_hash text;
