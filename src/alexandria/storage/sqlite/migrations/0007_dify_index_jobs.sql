-- Dify documents have their own index job kind (``index_dify_document``): live jobs queued by earlier releases
-- under the Dust kind for a document written through Dify move to it.
UPDATE jobs SET kind = 'index_dify_document'
WHERE kind = 'index_document' AND state IN ('queued', 'running') AND EXISTS (
    SELECT 1 FROM documents d WHERE d.data_source_id = jobs.data_source_id AND d.document_id = jobs.subject
    AND d.dify IS NOT NULL
);
