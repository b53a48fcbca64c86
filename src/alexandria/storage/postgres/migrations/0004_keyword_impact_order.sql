-- Keyword search reads each query term's postings best-first (storage/postgres/keyword_topk.py): the postings index
-- orders a term's postings by their BM25 term-frequency factor at a reference chunk length of 150 lexemes
-- (keyword_topk.IMPACT_SQL and REF_LENGTH: keep them equal), and a chunk's own postings are found by (chunk, lexeme)
-- for exact scoring. Both indexes cover what they serve, so no posting row is read from the table.
DROP INDEX IF EXISTS chunk_terms_postings;
CREATE INDEX chunk_terms_postings ON chunk_terms (
  data_source_id, lexeme, (tf::float8 / (0.25::float8 + 0.005::float8 * length::float8)) DESC
) INCLUDE (chunk_id, tf, length);
DROP INDEX IF EXISTS chunk_terms_by_chunk;
CREATE INDEX chunk_terms_by_chunk ON chunk_terms (chunk_id, lexeme) INCLUDE (tf, length, data_source_id);
