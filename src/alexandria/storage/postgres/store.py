"""The scale-out store: PostgreSQL + pgvector, selected by a ``postgresql://`` database URL. Stateless: any number
of API and worker processes share one database."""

from __future__ import annotations

from alexandria.config import Settings
from alexandria.storage.common.catalog import Catalog
from alexandria.storage.common.dify_catalog import DifyCatalogRows
from alexandria.storage.common.dify_documents import DifyDocumentRows
from alexandria.storage.common.dify_segments import DifySegmentRows
from alexandria.storage.common.documents import Documents
from alexandria.storage.common.spaces import Spaces
from alexandria.storage.common.transfer import Transfer
from alexandria.storage.database import Database
from alexandria.storage.postgres.chunk_index import PgChunkIndex
from alexandria.storage.postgres.db import PgEngine
from alexandria.storage.postgres.jobs import PgJobs
from alexandria.storage.postgres.search import PgSearch
from alexandria.storage.postgres.tables import PgTables


class PostgresStore(
    PgTables, Catalog, Documents, PgSearch, Spaces, DifyCatalogRows, DifyDocumentRows, DifySegmentRows, PgJobs, Transfer
):
    def __init__(self, url: str, settings: Settings) -> None:
        self.engine = PgEngine(url)
        self.exact_max = settings.exact_search_max_candidates
        self.hnsw_m = settings.hnsw_connectivity
        self.hnsw_ef_construction = settings.hnsw_expansion_add
        self.hnsw_ef_search = settings.hnsw_expansion_search
        self.db = Database(self.engine)
        self.index = PgChunkIndex(self.db, self.hnsw_m, self.hnsw_ef_construction)
        self.index.reanalyze_stale()  # keyword postings built by an earlier analyzer (an upgraded database)

    def close(self) -> None:
        self.engine.close()


def open_postgres_store(url: str, settings: Settings) -> PostgresStore:
    return PostgresStore(url, settings)
