-- An import writes only rows that are new or differ from the stored row;
-- the rest it counts as unchanged.
ALTER TABLE jobs ADD COLUMN unchanged_rows bigint NOT NULL DEFAULT 0;
