-- Seed 000's "sent" as a watermark, not a flag per row. What a group has
-- been sent is the snapshot of its last delivered export; a node is unsent
-- when the transaction that last changed it (`changed_xid`, a 64-bit xid:
-- no wraparound) is not visible in that snapshot. The terminal write of an
-- export moves one row per group, whatever the group's size, instead of
-- writing a new version of every user it sent.
--
-- The table is `node_rows`; `nodes` is a view over it that keeps the
-- seed's readers working, `processed` among its columns (computed from the
-- watermark). INSERT and UPDATE through the view work as before.

ALTER TABLE nodes RENAME TO node_rows;

-- Every row that exists now gets xid 1 without a rewrite (a constant
-- default is stored once, in the catalog); rows written from now on get
-- their writer's transaction.
ALTER TABLE node_rows ADD COLUMN changed_xid xid8 NOT NULL DEFAULT '1';
ALTER TABLE node_rows ALTER COLUMN changed_xid SET DEFAULT pg_current_xact_id();

CREATE TABLE IF NOT EXISTS group_watermarks (
    domain_id uuid NOT NULL,
    group_id  uuid NOT NULL,
    -- What the group's last delivered export saw; NULL after a reset (the
    -- group's every user is unsent).
    snapshot  pg_snapshot,
    sent_at   timestamptz,
    job_id    uuid,
    -- The last reset, and its transaction: an export whose snapshot began
    -- before it does not move the watermark.
    reset_at  timestamptz,
    reset_xid xid8,
    PRIMARY KEY (domain_id, group_id)
);

-- The first watermark: a group with users already sent has them sent
-- under snapshot `2:2:`, in which xid 1 (every existing row) is visible.
-- Its unsent users are made changed now, which writes only those rows.
INSERT INTO group_watermarks (domain_id, group_id, snapshot, sent_at)
SELECT domain_id, group_id, '2:2:'::pg_snapshot, max(updated_at)
FROM node_rows WHERE processed
GROUP BY domain_id, group_id
ON CONFLICT DO NOTHING;
UPDATE node_rows n SET changed_xid = pg_current_xact_id()
WHERE NOT n.processed
  AND EXISTS (SELECT FROM group_watermarks w
              WHERE w.domain_id = n.domain_id AND w.group_id = n.group_id);

ALTER TABLE node_rows DROP COLUMN processed;

-- A group's users changed since a snapshot's xmin, in one index range:
-- rows changed before it are sent without being looked at.
CREATE INDEX IF NOT EXISTS node_rows_changed_idx ON node_rows (domain_id, group_id, changed_xid);

-- Another tool's change through SQL is a change too. ferry's own writers
-- set `changed_xid` themselves (or keep it, for metadata that an import's
-- `resend_changed = false` does not count), and say so with `ferry.writer`.
CREATE OR REPLACE FUNCTION ferry_node_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.changed_xid := pg_current_xact_id();
  RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS node_rows_changed ON node_rows;
CREATE TRIGGER node_rows_changed BEFORE UPDATE ON node_rows
FOR EACH ROW
WHEN ((NEW.reference_id, NEW.group_id, NEW.domain_id, NEW.type, NEW.metadata)
          IS DISTINCT FROM (OLD.reference_id, OLD.group_id, OLD.domain_id, OLD.type, OLD.metadata)
      AND NEW.changed_xid = OLD.changed_xid
      AND current_setting('ferry.writer', true) IS DISTINCT FROM 'on')
EXECUTE FUNCTION ferry_node_changed();

-- The seed's `nodes`, `processed` computed: sent when its last change is
-- visible in its group's watermark.
CREATE VIEW nodes AS
SELECT n.id, n.reference_id, n.group_id, n.type, n.domain_id,
       coalesce((SELECT pg_visible_in_snapshot(n.changed_xid, w.snapshot)
                 FROM group_watermarks w
                 WHERE w.domain_id = n.domain_id AND w.group_id = n.group_id), false) AS processed,
       n.metadata, n.created_at, n.updated_at, n.changed_xid
FROM node_rows n;

-- The same, as ferry's exports of `node` read it: `processed` by a join,
-- which the planner drops when `processed` is not selected (a lookup per
-- row in `nodes`, about 1 s over a million rows; the join, 0.02 s). Not
-- writable (`nodes` is).
CREATE VIEW nodes_export AS
SELECT n.id, n.reference_id, n.group_id, n.type, n.domain_id,
       coalesce(pg_visible_in_snapshot(n.changed_xid, w.snapshot), false) AS processed,
       n.metadata, n.created_at, n.updated_at, n.changed_xid
FROM node_rows n
LEFT JOIN group_watermarks w ON w.domain_id = n.domain_id AND w.group_id = n.group_id;

-- The exact-version marking it replaces.
DROP FUNCTION IF EXISTS ferry_full_xid(xid, bigint);
