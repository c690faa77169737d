-- A domain's nodes in export order: an export reads one tenant's rows (the
-- tenant condition, then `ORDER BY created_at, id` and keyset resumes on
-- it) without scanning every tenant's. Without it, an export's time grew
-- with the whole table, not with its domain.
CREATE INDEX IF NOT EXISTS nodes_domain_created_idx ON nodes (domain_id, created_at, id);
