-- Groups (a global group per workspace holds every key), restricted spaces, data source views, folders.
CREATE TABLE groups (
  id INTEGER PRIMARY KEY,
  sid TEXT NOT NULL UNIQUE,
  workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('global', 'regular')),
  created_at INTEGER NOT NULL,
  UNIQUE (workspace_id, name)
);
CREATE UNIQUE INDEX groups_one_global ON groups(workspace_id) WHERE kind = 'global';

CREATE TABLE group_keys (
  group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
  api_key_id INTEGER NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
  PRIMARY KEY (group_id, api_key_id)
) WITHOUT ROWID;
CREATE INDEX group_keys_by_key ON group_keys(api_key_id);

-- A space is open to the groups attached to it; a regular space without the global group is restricted.
CREATE TABLE space_groups (
  space_id INTEGER NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
  group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
  PRIMARY KEY (space_id, group_id)
) WITHOUT ROWID;

CREATE UNIQUE INDEX spaces_name ON spaces(workspace_id, name);

CREATE TABLE data_source_views (
  id INTEGER PRIMARY KEY,
  sid TEXT NOT NULL UNIQUE,
  workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  space_id INTEGER NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
  data_source_id INTEGER NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('default', 'custom')),
  parents_in TEXT,             -- JSON array, NULL for default views
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX views_one_default ON data_source_views(data_source_id) WHERE kind = 'default';
CREATE INDEX views_by_space ON data_source_views(space_id);

CREATE TABLE folders (
  id INTEGER PRIMARY KEY,
  data_source_id INTEGER NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
  folder_id TEXT NOT NULL,
  title TEXT NOT NULL,
  parents TEXT NOT NULL,       -- JSON array, parents[0] = the folder itself
  parent_id TEXT,
  mime_type TEXT NOT NULL,
  source_url TEXT,
  provider_visibility TEXT,
  timestamp INTEGER NOT NULL,
  created INTEGER NOT NULL,
  updated INTEGER NOT NULL,
  UNIQUE (data_source_id, folder_id)
);

-- Back-fill stores created before this version: a global group per workspace attached to its global space, and a
-- default view per data source.
INSERT INTO groups (sid, workspace_id, name, kind, created_at)
  SELECT 'grp_' || lower(hex(randomblob(5))), id, 'Workspace', 'global', created_at FROM workspaces;
INSERT INTO space_groups (space_id, group_id)
  SELECT s.id, g.id FROM spaces s JOIN groups g ON g.workspace_id = s.workspace_id AND g.kind = 'global'
  WHERE s.kind = 'global';
INSERT INTO data_source_views (sid, workspace_id, space_id, data_source_id, kind, parents_in, created_at, updated_at)
  SELECT 'dsv_' || lower(hex(randomblob(5))), workspace_id, space_id, id, 'default', NULL, created_at, created_at
  FROM data_sources;
