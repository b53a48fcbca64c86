-- The keyword analyzer's version each data source's keyword index was built with (search/analysis.py): 0, the
-- FTS5 porter tokenizer of earlier releases; opening the store re-analyses every data source whose version differs.
ALTER TABLE data_sources ADD COLUMN keyword_analyzer INTEGER NOT NULL DEFAULT 0;
