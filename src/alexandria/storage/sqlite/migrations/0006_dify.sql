-- Dify's Knowledge API over the same core.
-- Every data source gets a Dify dataset id (a UUID) and a JSON record of its Dify settings (indexing technique,
-- retrieval model, doc_form, latest process rule, built-in metadata switch, ...).
ALTER TABLE data_sources ADD COLUMN uuid TEXT;
ALTER TABLE data_sources ADD COLUMN dify TEXT NOT NULL DEFAULT '{}';
ALTER TABLE data_sources ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
UPDATE data_sources SET updated_at = created_at;
UPDATE data_sources SET uuid = (
  SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a' || substr(h, 18, 3) || '-' ||
         substr(h, 21, 12)
  FROM (SELECT lower(hex(randomblob(16))) AS h)
) WHERE uuid IS NULL;
CREATE UNIQUE INDEX data_sources_uuid ON data_sources(uuid);

-- Documents: a Dify id (for documents written through Dify it is also their document_id), their place in the
-- dataset, whether they are enabled or archived (a disabled or archived document has no chunks: it is out of every
-- index, as in Dify), their metadata values by field name, the upload batch, and the Dify processing record
-- (process rule, doc_form, file, pipeline timestamps...). `dify` NULL: the document was written through Dust and is
-- chunked by Dust's section chunker; otherwise its chunks are derived from its segments.
-- index_state gains Dify's pipeline states: pending (Dify's "waiting") -> parsing -> splitting -> indexing ->
-- indexed ("completed") | failed ("error").
ALTER TABLE documents ADD COLUMN uuid TEXT;
ALTER TABLE documents ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1;
ALTER TABLE documents ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN disabled_at INTEGER;
ALTER TABLE documents ADD COLUMN doc_metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE documents ADD COLUMN batch TEXT;
ALTER TABLE documents ADD COLUMN dify TEXT;
UPDATE documents SET position = id, uuid = (
  SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a' || substr(h, 18, 3) || '-' ||
         substr(h, 21, 12)
  FROM (SELECT lower(hex(randomblob(16))) AS h)
) WHERE uuid IS NULL;
CREATE UNIQUE INDEX documents_uuid ON documents(uuid);
CREATE INDEX documents_by_batch ON documents(data_source_id, batch);

-- Segments (Dify's chunks as the user sees and edits them). For a text_model document each enabled segment is
-- indexed as one chunk; for a hierarchical_model document its child chunks are indexed instead. Chunks name the
-- segment (and child chunk) they index; Dust chunks name none.
CREATE TABLE segments (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  uuid TEXT NOT NULL UNIQUE,
  data_source_id INTEGER NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  document_pk INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  content TEXT NOT NULL,
  answer TEXT,
  keywords TEXT NOT NULL DEFAULT '[]',  -- JSON array
  hash TEXT NOT NULL,                   -- Dify's index_node_hash
  index_node_id TEXT NOT NULL,
  word_count INTEGER NOT NULL,
  tokens INTEGER NOT NULL,
  enabled INTEGER NOT NULL DEFAULT 1,
  status TEXT NOT NULL,                 -- waiting | indexing | completed | error | re_segment
  error TEXT,
  hit_count INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  disabled_at INTEGER,
  indexing_at INTEGER,
  completed_at INTEGER,
  stopped_at INTEGER
);
CREATE INDEX segments_by_document ON segments(document_pk, position);

CREATE TABLE child_chunks (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  uuid TEXT NOT NULL UNIQUE,
  segment_pk INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
  document_pk INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  content TEXT NOT NULL,
  word_count INTEGER NOT NULL,
  type TEXT NOT NULL,                   -- automatic | customized
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX child_chunks_by_segment ON child_chunks(segment_pk, position);

ALTER TABLE chunks ADD COLUMN segment_pk INTEGER;
ALTER TABLE chunks ADD COLUMN child_pk INTEGER;
CREATE INDEX chunks_by_segment ON chunks(segment_pk) WHERE segment_pk IS NOT NULL;

-- Uploaded files (create-by-file): kept so a document can be re-processed and its file described.
CREATE TABLE files (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  size INTEGER NOT NULL,
  extension TEXT NOT NULL,
  mime_type TEXT NOT NULL,
  data BLOB NOT NULL,
  created_at INTEGER NOT NULL
);

-- Dataset metadata fields (Dify's doc_metadata definitions); documents hold the values by name.
CREATE TABLE metadata_fields (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  data_source_id INTEGER NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  type TEXT NOT NULL CHECK (type IN ('string', 'number', 'time')),
  created_at INTEGER NOT NULL,
  UNIQUE (data_source_id, name)
);

-- Knowledge tags of a workspace and their bindings to datasets.
CREATE TABLE dataset_tags (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  UNIQUE (workspace_id, name)
);
CREATE TABLE dataset_tag_bindings (
  tag_pk INTEGER NOT NULL REFERENCES dataset_tags(id) ON DELETE CASCADE,
  data_source_id INTEGER NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (tag_pk, data_source_id)
);

-- A key may be bound to one data source (Dify's dataset-scoped keys): used elsewhere it gets 403.
ALTER TABLE api_keys ADD COLUMN data_source_id INTEGER REFERENCES data_sources(id) ON DELETE CASCADE;

-- Secrets of this installation (e.g. the key that signs file download URLs), made once and shared by every process.
CREATE TABLE instance_secrets (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
