"""The embedded store: SQLite (WAL) plus, per data source, a tantivy keyword index and a usearch HNSW cache."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from alexandria.config import Settings
from alexandria.errors import InvalidRequest
from alexandria.ingest.base import Vectors
from alexandria.storage.common.catalog import Catalog, data_sources_where
from alexandria.storage.common.dify_catalog import DifyCatalogRows
from alexandria.storage.common.dify_documents import DifyDocumentRows
from alexandria.storage.common.dify_segments import DifySegmentRows
from alexandria.storage.common.documents import Documents
from alexandria.storage.common.openai_files import OpenAIFileRows
from alexandria.storage.common.spaces import Spaces
from alexandria.storage.common.transfer import Transfer
from alexandria.storage.database import Database
from alexandria.storage.sqlite.chunk_index import SqliteChunkIndex
from alexandria.storage.sqlite.db import SqliteEngine
from alexandria.storage.sqlite.filter_memo import FilterMemo
from alexandria.storage.sqlite.jobs import SqliteJobs
from alexandria.storage.sqlite.keyword_index import KeywordIndexes
from alexandria.storage.sqlite.keyword_upgrade import drop_fts5_tables
from alexandria.storage.sqlite.search import SqliteSearch
from alexandria.storage.sqlite.tables import SqliteTables
from alexandria.storage.sqlite.vectors import HnswParams, VectorIndexes, vectors_from_blobs


def open_sqlite_store(url: str, settings: Settings) -> SqliteStore:
    if not url.startswith("sqlite:///"):
        raise InvalidRequest(f"SQLite URLs look like sqlite:///relative/path or sqlite:////absolute/path, not {url}")
    return SqliteStore(Path(url[len("sqlite:///") :]), settings)


class SqliteStore(
    Catalog,
    Documents,
    Spaces,
    SqliteSearch,
    SqliteJobs,
    SqliteTables,
    DifyCatalogRows,
    DifyDocumentRows,
    DifySegmentRows,
    OpenAIFileRows,
    Transfer,
):
    def __init__(self, path: Path, settings: Settings) -> None:
        self.engine = SqliteEngine(path)
        self.vectors = VectorIndexes(
            path.parent / "vectors",
            HnswParams(settings.hnsw_connectivity, settings.hnsw_expansion_add, settings.hnsw_expansion_search),
        )
        self.keywords = KeywordIndexes(path.parent / "keyword")
        self.exact_max = settings.exact_search_max_candidates
        self.filter_memo = FilterMemo()
        self.db = Database(self.engine)
        self.index = SqliteChunkIndex(self.db, self.vectors, self.keywords)
        drop_fts5_tables(self.engine, self.keywords)  # a data directory from before the tantivy index
        self.index.reanalyze_stale()  # a keyword index built by an earlier analyzer (an upgraded data directory)

    def load_vector_indexes(self) -> int:
        """Every data source's HNSW index, loaded now (a server's start) and brought in step with the database if it
        is not (a crash before its file was saved): no search waits for a file or a rebuild. Returns how many."""
        with self.db.read() as conn:
            data_sources = data_sources_where(conn, "1 = 1", ())
        for ds in data_sources:
            self._ensure_index(ds)
        return len(data_sources)

    def close(self) -> None:
        self.vectors.save_all()
        self.keywords.flush_all()
        self.engine.close()

    def chunk_vectors(self, chunk_pks: Sequence[int], dim: int) -> tuple[list[int], Vectors]:
        """The stored vectors of chunks (exact scoring), as a matrix; their ids in the matrix's order."""
        cur = self.engine.reader().execute(
            "SELECT id, vector FROM chunks WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(chunk_pks)),),
        )
        got = cur.fetchall()
        return [int(r[0]) for r in got], vectors_from_blobs([r[1] for r in got], dim)
