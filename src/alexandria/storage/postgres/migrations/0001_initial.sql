-- Alexandria on PostgreSQL + pgvector: the same model as the embedded store (storage/sqlite/migrations), in one
-- script. Times are epoch milliseconds (BIGINT); JSON is jsonb; vectors are pgvector `vector`s (one dimension per
-- data source, indexed by a partial HNSW index per data source over `embedding::halfvec(dim)`, created with it).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE workspaces (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sid TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  created_at BIGINT NOT NULL
);

CREATE TABLE spaces (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sid TEXT NOT NULL UNIQUE,
  workspace_id BIGINT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('global', 'regular', 'system')),
  name TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX spaces_one_global ON spaces(workspace_id) WHERE kind = 'global';
CREATE UNIQUE INDEX spaces_one_system ON spaces(workspace_id) WHERE kind = 'system';
CREATE UNIQUE INDEX spaces_name ON spaces(workspace_id, name);

CREATE TABLE data_sources (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sid TEXT NOT NULL UNIQUE,
  core_id TEXT NOT NULL UNIQUE,
  workspace_id BIGINT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  space_id BIGINT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  description TEXT,
  connector_provider TEXT,
  embedder TEXT NOT NULL,
  dim INTEGER NOT NULL,
  chunk_size INTEGER NOT NULL,
  vector_version BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  uuid TEXT NOT NULL UNIQUE,
  dify JSONB NOT NULL DEFAULT '{}',
  updated_at BIGINT NOT NULL DEFAULT 0,
  -- BM25 statistics of the data source's chunks (kept in step by every chunk write)
  chunk_total BIGINT NOT NULL DEFAULT 0,
  chunk_length_total BIGINT NOT NULL DEFAULT 0,
  stats_version BIGINT NOT NULL DEFAULT 0,   -- bumped by every chunk write (keys cached document frequencies)
  UNIQUE (workspace_id, name)
);

CREATE TABLE documents (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  data_source_id BIGINT NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  document_id TEXT NOT NULL,
  title TEXT NOT NULL,
  mime_type TEXT NOT NULL,
  source_url TEXT,
  timestamp BIGINT NOT NULL,
  tags JSONB NOT NULL,
  parents JSONB NOT NULL,
  parent_id TEXT,
  section TEXT NOT NULL,
  text TEXT NOT NULL,
  hash TEXT NOT NULL,
  text_size BIGINT NOT NULL,
  chunk_count INTEGER NOT NULL DEFAULT 0,
  token_count INTEGER NOT NULL DEFAULT 0,
  created BIGINT NOT NULL,
  updated BIGINT NOT NULL,
  index_state TEXT NOT NULL DEFAULT 'indexed',
  index_error TEXT,
  uuid TEXT NOT NULL UNIQUE,
  position BIGINT NOT NULL DEFAULT 0,
  enabled BOOLEAN NOT NULL DEFAULT TRUE,
  archived BOOLEAN NOT NULL DEFAULT FALSE,
  disabled_at BIGINT,
  doc_metadata JSONB NOT NULL DEFAULT '{}',
  batch TEXT,
  dify JSONB,
  UNIQUE (data_source_id, document_id)
);
CREATE INDEX documents_by_timestamp ON documents(data_source_id, timestamp DESC);
CREATE INDEX documents_by_batch ON documents(data_source_id, batch);

CREATE TABLE document_tags (
  tag TEXT NOT NULL,
  document_pk BIGINT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  PRIMARY KEY (tag, document_pk)
);
CREATE INDEX document_tags_by_doc ON document_tags(document_pk);

CREATE TABLE document_parents (
  parent TEXT NOT NULL,
  document_pk BIGINT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  PRIMARY KEY (parent, document_pk)
);
CREATE INDEX document_parents_by_doc ON document_parents(document_pk);

-- Chunks: the search index. `length` is the chunk's number of lexeme occurrences (BM25's document length).
CREATE TABLE chunks (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  data_source_id BIGINT NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  document_pk BIGINT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  chunk_offset INTEGER NOT NULL,
  text TEXT NOT NULL,
  hash TEXT NOT NULL,
  token_count INTEGER NOT NULL,
  embedding vector NOT NULL,
  length INTEGER NOT NULL,
  segment_pk BIGINT,
  child_pk BIGINT
);
CREATE INDEX chunks_by_document ON chunks(document_pk, chunk_offset);
CREATE INDEX chunks_by_data_source ON chunks(data_source_id);
CREATE INDEX chunks_by_segment ON chunks(segment_pk) WHERE segment_pk IS NOT NULL;

-- The keyword index: one posting per (lexeme, chunk) with the lexeme's frequency in the chunk and the chunk's
-- length (English stemming, PostgreSQL full text). BM25 reads only the query terms' postings, from the covering
-- index (no chunk row is touched); a term's document frequency is its number of postings.
CREATE TABLE chunk_terms (
  data_source_id BIGINT NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  lexeme TEXT NOT NULL,
  chunk_id BIGINT NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
  tf INTEGER NOT NULL,
  length INTEGER NOT NULL
);
CREATE INDEX chunk_terms_postings ON chunk_terms(data_source_id, lexeme) INCLUDE (chunk_id, tf, length);
CREATE INDEX chunk_terms_by_chunk ON chunk_terms(chunk_id);

CREATE TABLE api_keys (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  workspace_id BIGINT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('admin', 'builder', 'user', 'system')),
  key_hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  disabled_at BIGINT,
  data_source_id BIGINT REFERENCES data_sources(id) ON DELETE CASCADE
);

CREATE TABLE jobs (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind TEXT NOT NULL,
  workspace_id BIGINT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  data_source_id BIGINT REFERENCES data_sources(id) ON DELETE CASCADE,
  subject TEXT,
  payload JSONB NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  error TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  run_after BIGINT NOT NULL DEFAULT 0,
  lease_owner TEXT,
  lease_until BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_ready ON jobs(state, run_after);
CREATE INDEX jobs_live_by_subject ON jobs(data_source_id, subject) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_finished ON jobs(updated_at) WHERE state IN ('done', 'failed');

CREATE TABLE groups (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sid TEXT NOT NULL UNIQUE,
  workspace_id BIGINT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('global', 'regular')),
  created_at BIGINT NOT NULL,
  UNIQUE (workspace_id, name)
);
CREATE UNIQUE INDEX groups_one_global ON groups(workspace_id) WHERE kind = 'global';

CREATE TABLE group_keys (
  group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
  api_key_id BIGINT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
  PRIMARY KEY (group_id, api_key_id)
);
CREATE INDEX group_keys_by_key ON group_keys(api_key_id);

CREATE TABLE space_groups (
  space_id BIGINT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
  group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
  PRIMARY KEY (space_id, group_id)
);

CREATE TABLE data_source_views (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sid TEXT NOT NULL UNIQUE,
  workspace_id BIGINT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  space_id BIGINT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
  data_source_id BIGINT NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('default', 'custom')),
  parents_in JSONB,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX views_one_default ON data_source_views(data_source_id) WHERE kind = 'default';
CREATE INDEX views_by_space ON data_source_views(space_id);

CREATE TABLE folders (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  data_source_id BIGINT NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  folder_id TEXT NOT NULL,
  title TEXT NOT NULL,
  parents JSONB NOT NULL,
  parent_id TEXT,
  mime_type TEXT NOT NULL,
  source_url TEXT,
  provider_visibility TEXT,
  timestamp BIGINT NOT NULL,
  created BIGINT NOT NULL,
  updated BIGINT NOT NULL,
  UNIQUE (data_source_id, folder_id)
);

CREATE TABLE data_tables (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  data_source_id BIGINT NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  table_id TEXT NOT NULL,
  name TEXT NOT NULL,
  title TEXT NOT NULL,
  description TEXT NOT NULL,
  mime_type TEXT NOT NULL,
  timestamp BIGINT NOT NULL,
  tags JSONB NOT NULL,
  parents JSONB NOT NULL,
  parent_id TEXT,
  source_url TEXT,
  remote_database_table_id TEXT,
  remote_database_secret_id TEXT,
  schema JSONB,
  schema_stale BOOLEAN NOT NULL DEFAULT FALSE,
  rows_version BIGINT NOT NULL DEFAULT 0,
  created BIGINT NOT NULL,
  updated BIGINT NOT NULL,
  UNIQUE (data_source_id, table_id),
  UNIQUE (data_source_id, name)
);

-- A row's value is `json`, not `jsonb`: kept as written, so its keys keep their order (the schema's column order
-- is their first-seen order) and a float stays a float (jsonb would sort keys and turn 1e20 into an integer).
CREATE TABLE table_rows (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  table_pk BIGINT NOT NULL REFERENCES data_tables(id) ON DELETE CASCADE,
  row_id TEXT NOT NULL,
  value JSON NOT NULL,
  UNIQUE (table_pk, row_id)
);
CREATE INDEX table_rows_in_order ON table_rows(table_pk, id);

CREATE TABLE segments (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  data_source_id BIGINT NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  document_pk BIGINT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  content TEXT NOT NULL,
  answer TEXT,
  keywords JSONB NOT NULL DEFAULT '[]',
  hash TEXT NOT NULL,
  index_node_id TEXT NOT NULL,
  word_count INTEGER NOT NULL,
  tokens INTEGER NOT NULL,
  enabled BOOLEAN NOT NULL DEFAULT TRUE,
  status TEXT NOT NULL,
  error TEXT,
  hit_count INTEGER NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  disabled_at BIGINT,
  indexing_at BIGINT,
  completed_at BIGINT,
  stopped_at BIGINT
);
CREATE INDEX segments_by_document ON segments(document_pk, position);

CREATE TABLE child_chunks (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  segment_pk BIGINT NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
  document_pk BIGINT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  content TEXT NOT NULL,
  word_count INTEGER NOT NULL,
  type TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX child_chunks_by_segment ON child_chunks(segment_pk, position);

CREATE TABLE files (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  workspace_id BIGINT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  size BIGINT NOT NULL,
  extension TEXT NOT NULL,
  mime_type TEXT NOT NULL,
  data BYTEA NOT NULL,
  created_at BIGINT NOT NULL
);

CREATE TABLE metadata_fields (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  data_source_id BIGINT NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  type TEXT NOT NULL CHECK (type IN ('string', 'number', 'time')),
  created_at BIGINT NOT NULL,
  UNIQUE (data_source_id, name)
);

CREATE TABLE dataset_tags (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  workspace_id BIGINT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  UNIQUE (workspace_id, name)
);

CREATE TABLE dataset_tag_bindings (
  tag_pk BIGINT NOT NULL REFERENCES dataset_tags(id) ON DELETE CASCADE,
  data_source_id BIGINT NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (tag_pk, data_source_id)
);

CREATE TABLE instance_secrets (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

-- SQL over tables (storage/postgres/sql.py): client queries run as `alexandria_sql`, a role with no privilege on
-- this schema, that can neither log in nor change its settings. A role is cluster-wide: create it once.
-- `set_config` is revoked from PUBLIC because an unprivileged role switched to with SET ROLE can otherwise call
-- set_config('role', 'none', ...) inside its own SELECT and be the session user (the owner, or a superuser) again.
DO $$
BEGIN
  CREATE ROLE alexandria_sql NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;
DO $$
BEGIN
  EXECUTE 'GRANT TEMPORARY ON DATABASE ' || quote_ident(current_database()) || ' TO alexandria_sql';
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'GRANT alexandria_sql TO ' || quote_ident(current_user);  -- to SET ROLE to it
  END IF;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE WARNING USING MESSAGE = 'alexandria_sql: ' || SQLERRM;  -- SQL over tables then refuses to run
END
$$;
REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO pg_database_owner;
