-- Alexandria embedded store, schema version 1.
CREATE TABLE workspaces (
  id INTEGER PRIMARY KEY,
  sid TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  created_at INTEGER NOT NULL
);

CREATE TABLE spaces (
  id INTEGER PRIMARY KEY,
  sid TEXT NOT NULL UNIQUE,
  workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('global', 'regular', 'system')),
  name TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX spaces_one_global ON spaces(workspace_id) WHERE kind = 'global';
CREATE UNIQUE INDEX spaces_one_system ON spaces(workspace_id) WHERE kind = 'system';

CREATE TABLE data_sources (
  id INTEGER PRIMARY KEY,
  sid TEXT NOT NULL UNIQUE,
  core_id TEXT NOT NULL UNIQUE,
  workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  space_id INTEGER NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  description TEXT,
  connector_provider TEXT,
  embedder TEXT NOT NULL,
  dim INTEGER NOT NULL,
  chunk_size INTEGER NOT NULL,
  vector_version INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  UNIQUE (workspace_id, name)
);

CREATE TABLE documents (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  data_source_id INTEGER NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  document_id TEXT NOT NULL,
  title TEXT NOT NULL,
  mime_type TEXT NOT NULL,
  source_url TEXT,
  timestamp INTEGER NOT NULL,
  tags TEXT NOT NULL,          -- JSON array
  parents TEXT NOT NULL,       -- JSON array, parents[0] = the document itself
  parent_id TEXT,
  section TEXT NOT NULL,       -- JSON section tree
  text TEXT NOT NULL,          -- full text (prefixes + contents, depth first)
  hash TEXT NOT NULL,
  text_size INTEGER NOT NULL,
  chunk_count INTEGER NOT NULL,
  token_count INTEGER NOT NULL,
  created INTEGER NOT NULL,
  updated INTEGER NOT NULL,
  UNIQUE (data_source_id, document_id)
);
CREATE INDEX documents_by_timestamp ON documents(data_source_id, timestamp DESC);

CREATE TABLE document_tags (
  tag TEXT NOT NULL,
  document_pk INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  PRIMARY KEY (tag, document_pk)
) WITHOUT ROWID;
CREATE INDEX document_tags_by_doc ON document_tags(document_pk);

CREATE TABLE document_parents (
  parent TEXT NOT NULL,
  document_pk INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  PRIMARY KEY (parent, document_pk)
) WITHOUT ROWID;
CREATE INDEX document_parents_by_doc ON document_parents(document_pk);

-- Chunk ids are never reused (AUTOINCREMENT), so the ANN cache can be reconciled by id set difference.
CREATE TABLE chunks (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  data_source_id INTEGER NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  document_pk INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  chunk_offset INTEGER NOT NULL,
  text TEXT NOT NULL,
  hash TEXT NOT NULL,
  token_count INTEGER NOT NULL,
  vector BLOB NOT NULL         -- float32 little-endian, unit length
);
CREATE INDEX chunks_by_document ON chunks(document_pk, chunk_offset);
CREATE INDEX chunks_by_data_source ON chunks(data_source_id);

CREATE TABLE api_keys (
  id INTEGER PRIMARY KEY,
  workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('admin', 'builder', 'user', 'system')),
  key_hash TEXT NOT NULL UNIQUE, -- sha256 of the secret; the secret itself is never stored
  prefix TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  disabled_at INTEGER
);

CREATE TABLE jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  data_source_id INTEGER REFERENCES data_sources(id) ON DELETE CASCADE,
  payload TEXT NOT NULL,       -- JSON: ids + version, never content
  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  error TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  run_after INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_ready ON jobs(state, run_after);
