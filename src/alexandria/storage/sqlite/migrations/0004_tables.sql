-- Tables (Dust's structured data) and their rows.
-- Table ids are never reused (AUTOINCREMENT), so cached query databases keyed by (id, rows_version) stay correct.
CREATE TABLE data_tables (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  data_source_id INTEGER NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  table_id TEXT NOT NULL,
  name TEXT NOT NULL,
  title TEXT NOT NULL,
  description TEXT NOT NULL,
  mime_type TEXT NOT NULL,
  timestamp INTEGER NOT NULL,
  tags TEXT NOT NULL,                 -- JSON array
  parents TEXT NOT NULL,              -- JSON array, parents[0] = the table itself
  parent_id TEXT,
  source_url TEXT,
  remote_database_table_id TEXT,
  remote_database_secret_id TEXT,
  schema TEXT,                        -- JSON [{name, value_type, possible_values}], NULL before any rows upsert
  schema_stale INTEGER NOT NULL DEFAULT 0, -- 1: rows were replaced or deleted, recompute from all rows
  rows_version INTEGER NOT NULL DEFAULT 0, -- bumped by every change of the rows
  created INTEGER NOT NULL,
  updated INTEGER NOT NULL,
  UNIQUE (data_source_id, table_id),
  UNIQUE (data_source_id, name)
);

-- Rows keep their first insertion order (id); an upsert of an existing row_id replaces the value in place.
CREATE TABLE table_rows (
  id INTEGER PRIMARY KEY,
  table_pk INTEGER NOT NULL REFERENCES data_tables(id) ON DELETE CASCADE,
  row_id TEXT NOT NULL,
  value TEXT NOT NULL,                -- JSON object
  UNIQUE (table_pk, row_id)
);
CREATE INDEX table_rows_in_order ON table_rows(table_pk, id);
