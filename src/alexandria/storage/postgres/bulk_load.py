"""Bulk loading into PostgreSQL (``alexandria import``): chunks by binary ``COPY``, their keyword postings in the same
set-based statement, the BM25 statistics once per data source, and each data source's partial HNSW index built once
over the loaded rows (with memory and parallel workers for it), then ``ANALYZE``.

Row by row, a load paid three times per chunk: one ``INSERT`` per document with its postings, one ``UPDATE`` of the
data source's statistics per document (a chain of row versions that every later update walks) and pgvector's HNSW
maintenance on every row. Here a batch of chunks is copied into a temporary table, then one statement gives them
their ids, analyses each text once (``to_tsvector``: the chunk's length and its postings come from the same
vector) and writes both the chunks and their postings. The HNSW index of a loaded data source is created only
after its rows are written (``PgChunkIndex.loading``), and everything is one transaction: a load that fails or is
killed leaves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psycopg

from alexandria.domain.models import DataSource
from alexandria.errors import StorageError
from alexandria.ingest.base import Vectors
from alexandria.storage.base import ChunkWrite
from alexandria.storage.chunk_index import checked_vectors
from alexandria.storage.database import Conn
from alexandria.storage.postgres.chunk_index import CHUNK_LENGTH, TERM_FREQUENCY, TS_CONFIG

#: chunks copied and written per batch
BATCH = 5000
STAGE_COLUMNS = "data_source_id, document_pk, chunk_offset, text, hash, token_count, embedding, segment_pk, child_pk"
STAGE_TYPES = ["bigint", "bigint", "integer", "text", "text", "integer", "vector", "bigint", "bigint"]

#: one batch: ids from the chunks' own sequence, each text analysed once, chunks and postings written together
WRITE_BATCH = f"""
WITH src AS MATERIALIZED (
  SELECT nextval(pg_get_serial_sequence('chunks', 'id')) AS id, l.*, to_tsvector('{TS_CONFIG}', l.text) AS tsv
  FROM load_chunks l
), sized AS MATERIALIZED (
  SELECT src.*, (SELECT {CHUNK_LENGTH} FROM unnest(src.tsv) t) AS length FROM src
), written AS (
  INSERT INTO chunks (id, data_source_id, document_pk, chunk_offset, text, hash, token_count, embedding, length,
                      segment_pk, child_pk)
  OVERRIDING SYSTEM VALUE
  SELECT id, data_source_id, document_pk, chunk_offset, text, hash, token_count, embedding, length, segment_pk,
         child_pk FROM sized
)
INSERT INTO chunk_terms (data_source_id, lexeme, chunk_id, tf, length)
SELECT s.data_source_id, t.lexeme, s.id, {TERM_FREQUENCY}, s.length FROM sized s CROSS JOIN LATERAL unnest(s.tsv) t
"""


class PgChunkLoad:
    """The :class:`~alexandria.storage.chunk_index.ChunkLoad` of PostgreSQL (see the module's docstring)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.raw: psycopg.Connection = conn.raw
        self.data_sources: list[DataSource] = []
        self.loaded: set[int] = set()
        self.rows: list[tuple[object, ...]] = []
        self.staged = False

    def add_data_source(self, ds: DataSource) -> None:
        self.data_sources.append(ds)  # its HNSW index is built once over the loaded rows, not grown row by row
        self.loaded.add(ds.id)

    def add(self, ds: DataSource, document_pk: int, chunks: Sequence[ChunkWrite], vectors: Vectors) -> None:
        if ds.id not in self.loaded:
            raise StorageError(f"data source {ds.id} is not being loaded")
        vecs = checked_vectors(ds, chunks, vectors)
        for chunk, vec in zip(chunks, vecs, strict=True):
            self.rows.append((ds.id, document_pk, chunk.offset, chunk.text, chunk.hash, chunk.token_count,
                              np.asarray(vec, np.float32), chunk.segment_pk, chunk.child_pk))  # fmt: skip
        if len(self.rows) >= BATCH:
            self._write()

    def _write(self) -> None:
        if not self.rows:
            return
        if not self.staged:
            self.raw.execute(f"CREATE TEMPORARY TABLE load_chunks AS SELECT {STAGE_COLUMNS} FROM chunks WITH NO DATA")
            self.staged = True
        with self.raw.cursor().copy(f"COPY load_chunks ({STAGE_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(STAGE_TYPES)
            for row in self.rows:
                copy.write_row(row)
        self.raw.execute(WRITE_BATCH)
        self.raw.execute("TRUNCATE load_chunks")
        self.rows = []

    def finish(self) -> None:
        """The last batch, then each loaded data source's BM25 statistics (once, from its rows)."""
        self._write()
        if self.staged:
            self.raw.execute("DROP TABLE load_chunks")
            self.staged = False
        for ds in self.data_sources:
            self.raw.execute(
                "UPDATE data_sources SET chunk_total = chunk_total + s.n, chunk_length_total = chunk_length_total + "
                "s.total, stats_version = stats_version + 1 FROM (SELECT count(*) AS n, coalesce(sum(length), 0) "
                "AS total FROM chunks WHERE data_source_id = %s) s WHERE id = %s",
                (ds.id, ds.id),
            )
