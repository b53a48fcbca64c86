-- OpenAI's Files API: an uploaded file's purpose (NULL for files uploaded through Dify's document routes, which the
-- Files API does not list), and the data source a file uploaded with a key bound to one is confined to.
ALTER TABLE files ADD COLUMN purpose TEXT;
ALTER TABLE files ADD COLUMN scope_data_source_id BIGINT;
CREATE INDEX files_by_purpose ON files(workspace_id, id) WHERE purpose IS NOT NULL;
