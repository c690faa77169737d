-- Seed 000's scheduled users export.

-- Seed 000's matching group configs: which groups of a domain are exported
-- at each tick, and how. `group_type` is text without a check, so a row
-- written by another tool with a type ferry does not know is counted and
-- skipped, not a failed migration.
CREATE TABLE IF NOT EXISTS matching_groups (
    domain_id  uuid NOT NULL,
    group_key  text NOT NULL,
    group_id   uuid NOT NULL,
    group_type text NOT NULL,
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain_id, group_key)
);

-- One row per schedule and fire time: the instance whose insert makes it
-- runs the tick; every other instance's insert finds it and does nothing,
-- however late it comes.
CREATE TABLE IF NOT EXISTS export_runs (
    id         uuid PRIMARY KEY,
    schedule   text NOT NULL,
    fire_at    timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Groups started, skipped (their previous export still runs), and of
    -- a type ferry does not know.
    started    integer NOT NULL DEFAULT 0,
    overlapped integer NOT NULL DEFAULT 0,
    invalid    integer NOT NULL DEFAULT 0,
    UNIQUE (schedule, fire_at)
);

-- A users export's messages, written as its ids stream and moved into the
-- outbox by its terminal write, in the same transaction that marks its
-- users sent: none is published unless all are, and a retried attempt
-- starts by deleting the last one's.
CREATE TABLE IF NOT EXISTS pending_messages (
    job_id      uuid NOT NULL,
    seq         integer NOT NULL,
    topic       text NOT NULL,
    message_key text NOT NULL,
    payload     text NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- A full transaction id for a row's `xmin` (which wraps at 2^32), relative
-- to the current one: with it, the terminal write marks sent exactly the
-- row versions the export's snapshot saw (`pg_visible_in_snapshot`).
CREATE OR REPLACE FUNCTION ferry_full_xid(x xid, now_xid bigint) RETURNS xid8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (now_xid - ((now_xid - x::text::bigint) & 4294967295))::text::xid8
$$;

-- Where an outbox message the broker refuses for good goes (a users
-- export's, to seed 000's `flairbit-dlq`); NULL: a status event, which is
-- cut down to fit instead.
ALTER TABLE status_outbox ADD COLUMN IF NOT EXISTS dead_letter_topic text;
