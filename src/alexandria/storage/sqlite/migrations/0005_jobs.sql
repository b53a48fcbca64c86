-- The durable job queue (async upserts): leases for claimed jobs, the subject a job is about (a document id, so a
-- newer upsert or a delete can retire queued jobs in its own transaction), and the index state of each document.
-- A claimed job is `running` with `lease_owner` and `lease_until` (epoch ms); a job whose lease has expired is
-- claimable again (its worker died). `attempts` counts claims.
ALTER TABLE jobs ADD COLUMN subject TEXT;
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_live_by_subject ON jobs(data_source_id, subject) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_finished ON jobs(updated_at) WHERE state IN ('done', 'failed');

-- `indexed`: the chunks reflect the stored content (sync upserts and finished jobs). `pending`: new content is
-- stored and an index job is queued; the chunks are still those of the previous version (none for a new document).
-- `failed`: the last index job gave up; `index_error` says why. (No CHECK constraint: finer pipeline states, e.g.
-- Dify's parsing/splitting/indexing, can be added later without rebuilding the documents table.)
ALTER TABLE documents ADD COLUMN index_state TEXT NOT NULL DEFAULT 'indexed';
ALTER TABLE documents ADD COLUMN index_error TEXT;
