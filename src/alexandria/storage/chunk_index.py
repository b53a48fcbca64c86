"""The per-engine index primitive that row storage calls: keeping the keyword and vector indexes in step with chunk
writes, and creating and dropping a data source's index structures.

Shared writers (``storage/common/``) never touch an FTS table, a posting list, an HNSW file or a pgvector index:
they open a :meth:`ChunkIndex.change` for a data source, write their rows on its connection, and add or remove
chunks through it. SQLite implements it over a tantivy keyword index and a usearch cache
(``storage/sqlite/chunk_index.py``), PostgreSQL over a posting table and pgvector (``storage/postgres/chunk_index.py``);
bulk loads are each engine's ``bulk_load.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from alexandria.domain.models import DataSource
from alexandria.errors import InvalidRequest
from alexandria.ingest.base import Vectors
from alexandria.storage.base import ChunkWrite
from alexandria.storage.database import Conn


class ChunkChange(Protocol):
    """One write transaction over one data source's chunks (its rows and both indexes)."""

    conn: Conn

    def add(self, document_pk: int, chunks: Sequence[ChunkWrite], vectors: Vectors) -> list[int]:
        """Insert a document's chunks (rows, keyword postings, vectors); their new ids in order."""
        ...

    def remove_document(self, document_pk: int) -> None:
        """Delete every chunk of a document from its rows and both indexes."""
        ...


class ChunkLoad(Protocol):
    """One write transaction loading whole data sources (an import): their rows are the caller's, their index
    structures are the index's."""

    conn: Conn

    def add_data_source(self, ds: DataSource) -> None:
        """``ds``, just inserted in this transaction, gets its index structures (its chunks follow)."""
        ...

    def add(self, ds: DataSource, document_pk: int, chunks: Sequence[ChunkWrite], vectors: Vectors) -> None:
        """Insert a document's chunks (rows, keyword postings, vectors)."""
        ...


class ChunkIndex(Protocol):
    #: the chunks' column holding a chunk's vector (read back with :meth:`stored_vector`)
    vector_column: str

    def stored_vector(self, value: object) -> Vectors:
        """A value read from :attr:`vector_column`, as float32."""
        ...

    def change(self, ds: DataSource) -> contextlib.AbstractContextManager[ChunkChange]:
        """A write transaction for ``ds``'s chunks: committed on success (then mirrored into any cache kept outside
        the database), rolled back on any exception."""
        ...

    def create(self, conn: Conn, ds: DataSource) -> None:
        """Create ``ds``'s index structures inside the transaction that creates its row."""
        ...

    def dropping(self, ds: DataSource) -> contextlib.AbstractContextManager[Conn]:
        """A write transaction in which the caller deletes ``ds``'s rows; ``ds``'s index structures go with it."""
        ...

    def loading(self) -> contextlib.AbstractContextManager[ChunkLoad]:
        """A write transaction that loads whole data sources (see :class:`ChunkLoad`); their index structures are
        complete when it returns (those inside the database when it commits, caches kept outside it built right
        after, from the committed rows)."""
        ...


def checked_vectors(ds: DataSource, chunks: Sequence[ChunkWrite], vectors: Vectors) -> Vectors:
    """``vectors`` as contiguous float32, after checking they match ``chunks`` and the data source's dimension."""
    if len(chunks) != len(vectors):
        raise InvalidRequest("chunks and vectors differ in length")
    if len(chunks) and vectors.shape[1] != ds.dim:
        raise InvalidRequest(f"vectors have dimension {vectors.shape[1]}, data source expects {ds.dim}")
    return np.ascontiguousarray(vectors, dtype=np.float32)
