"""Bulk loading into PostgreSQL (``alexandria import``): chunks and their keyword postings by binary ``COPY``, the
BM25 statistics once per data source, and each data source's partial HNSW index built once over the loaded rows
(with memory for it), then ``ANALYZE``.

Row by row, a load paid three times per chunk: one ``INSERT`` per document with its postings, one ``UPDATE`` of the
data source's statistics per document (a chain of row versions that every later update walks) and pgvector's HNSW
maintenance on every row. Here each chunk's text is analysed once in Python (``search/analysis.py``
``document_terms``, the analyzer every writer uses: its number of terms is the chunk's length, its distinct terms
its postings, ``chunk_index.chunk_postings``); a batch of chunks gets its ids from the chunks' own identity
sequence in one statement, then the chunks and the postings are each copied in. The HNSW index of a loaded data
source is created only after its rows are written (``PgChunkIndex.loading``), and everything is one transaction: a
load that fails or is killed leaves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psycopg

from alexandria.domain.models import DataSource
from alexandria.errors import StorageError
from alexandria.ingest.base import Vectors
from alexandria.search.analysis import document_terms
from alexandria.storage.base import ChunkWrite
from alexandria.storage.chunk_index import checked_vectors
from alexandria.storage.database import Conn
from alexandria.storage.postgres.chunk_index import chunk_postings

#: chunks copied per batch
BATCH = 5000
CHUNK_COLUMNS = (
    "id, data_source_id, document_pk, chunk_offset, text, hash, token_count, embedding, length, segment_pk, child_pk"
)
CHUNK_TYPES = [
    "bigint",
    "bigint",
    "bigint",
    "integer",
    "text",
    "text",
    "integer",
    "vector",
    "integer",
    "bigint",
    "bigint",
]
POSTING_COLUMNS = "data_source_id, lexeme, chunk_id, tf, length"
POSTING_TYPES = ["bigint", "text", "bigint", "integer", "integer"]


class PgChunkLoad:
    """The :class:`~alexandria.storage.chunk_index.ChunkLoad` of PostgreSQL (see the module's docstring)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.raw: psycopg.Connection = conn.raw
        self.data_sources: list[DataSource] = []
        self.loaded: set[int] = set()
        #: chunks waiting for their batch: (data source id, document pk, chunk, vector)
        self.pending: list[tuple[int, int, ChunkWrite, Vectors]] = []

    def add_data_source(self, ds: DataSource) -> None:
        self.data_sources.append(ds)  # its HNSW index is built once over the loaded rows, not grown row by row
        self.loaded.add(ds.id)

    def add(self, ds: DataSource, document_pk: int, chunks: Sequence[ChunkWrite], vectors: Vectors) -> None:
        if ds.id not in self.loaded:
            raise StorageError(f"data source {ds.id} is not being loaded")
        vecs = checked_vectors(ds, chunks, vectors)
        self.pending += [(ds.id, document_pk, chunk, vec) for chunk, vec in zip(chunks, vecs, strict=True)]
        if len(self.pending) >= BATCH:
            self._write()

    def _write(self) -> None:
        if not self.pending:
            return
        ids = [
            int(r[0])
            for r in self.raw.execute(
                "SELECT nextval(pg_get_serial_sequence('chunks', 'id')) FROM generate_series(1, %s)",
                (len(self.pending),),
            )
        ]
        analysed = [document_terms(chunk.text) for _, _, chunk, _ in self.pending]
        cur = self.raw.cursor()
        with cur.copy(f"COPY chunks ({CHUNK_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(CHUNK_TYPES)
            for pk, (ds_id, document_pk, c, vec), terms in zip(ids, self.pending, analysed, strict=True):
                copy.write_row((pk, ds_id, document_pk, c.offset, c.text, c.hash, c.token_count,
                                np.asarray(vec, np.float32), len(terms), c.segment_pk, c.child_pk))  # fmt: skip
        with cur.copy(f"COPY chunk_terms ({POSTING_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(POSTING_TYPES)
            for pk, (ds_id, _, _, _), terms in zip(ids, self.pending, analysed, strict=True):
                for term, chunk_id, tf, length in chunk_postings(pk, terms):
                    copy.write_row((ds_id, term, chunk_id, tf, length))
        self.pending = []

    def finish(self) -> None:
        """The last batch, then each loaded data source's BM25 statistics (once, from its rows)."""
        self._write()
        for ds in self.data_sources:
            self.raw.execute(
                "UPDATE data_sources SET chunk_total = chunk_total + s.n, chunk_length_total = chunk_length_total + "
                "s.total, stats_version = stats_version + 1 FROM (SELECT count(*) AS n, coalesce(sum(length), 0) "
                "AS total FROM chunks WHERE data_source_id = %s) s WHERE id = %s",
                (ds.id, ds.id),
            )
