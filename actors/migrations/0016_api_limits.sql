-- The API's per-caller limits hold across instances. api_buckets: a token
-- bucket per caller of export creations (a caller without a row has a full
-- one). api_holds: what a caller has open at once (requests in flight,
-- event streams), one row each, renewed by the instance that holds it and
-- dropped soon after it expires.
CREATE TABLE IF NOT EXISTS api_buckets (
    caller text PRIMARY KEY,
    tokens float8 NOT NULL,
    at     timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS api_holds (
    id       uuid PRIMARY KEY,
    caller   text NOT NULL,
    what     text NOT NULL,
    instance text NOT NULL,
    until    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS api_holds_caller_idx ON api_holds (caller, what);
CREATE INDEX IF NOT EXISTS api_holds_instance_idx ON api_holds (instance);
