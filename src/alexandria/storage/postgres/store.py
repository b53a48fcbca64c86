"""The scale-out store: PostgreSQL + pgvector, selected by a ``postgresql://`` database URL. Stateless: any number
of API and worker processes share one database."""

from __future__ import annotations

from alexandria.config import Settings
from alexandria.storage.common.dify_catalog import DifyCatalogRows
from alexandria.storage.common.dify_documents import DifyDocumentRows
from alexandria.storage.common.dify_segments import DifySegmentRows
from alexandria.storage.database import Database
from alexandria.storage.postgres.chunk_index import PgChunkIndex
from alexandria.storage.postgres.core import PgCore
from alexandria.storage.postgres.db import PgEngine
from alexandria.storage.postgres.jobs import PgJobs
from alexandria.storage.postgres.search import PgSearch
from alexandria.storage.postgres.spaces import PgSpaces
from alexandria.storage.postgres.tables import PgTables
from alexandria.storage.postgres.transfer import PgTransfer


class PostgresStore(
    PgTables, PgCore, PgSearch, PgSpaces, DifyCatalogRows, DifyDocumentRows, DifySegmentRows, PgJobs, PgTransfer
):
    def __init__(self, url: str, settings: Settings) -> None:
        self.engine = PgEngine(url)
        self.exact_max = settings.exact_search_max_candidates
        self.hnsw_m = settings.hnsw_connectivity
        self.hnsw_ef_construction = settings.hnsw_expansion_add
        self.hnsw_ef_search = settings.hnsw_expansion_search
        self.db = Database(self.engine)
        self.index = PgChunkIndex(self.db, self.hnsw_m, self.hnsw_ef_construction)


def open_postgres_store(url: str, settings: Settings) -> PostgresStore:
    return PostgresStore(url, settings)
