"""The core: services over one store, built from Settings. Knows nothing of HTTP."""

from __future__ import annotations

from alexandria.config import Settings
from alexandria.domain.jobs import INDEX_DIFY_DOCUMENT, INDEX_DOCUMENT
from alexandria.search.rerank import build_reranker
from alexandria.services.access import AccessService
from alexandria.services.catalog import CatalogService
from alexandria.services.dify import DifyService
from alexandria.services.dify_meta import DifyMeta
from alexandria.services.dify_retrieval import DifyRetrieval
from alexandria.services.dify_segments import DifySegments
from alexandria.services.documents import DocumentService
from alexandria.services.embedders import EmbedderRegistry
from alexandria.services.folders import FolderService
from alexandria.services.jobs import JobService
from alexandria.services.keys import KeyService
from alexandria.services.ratelimit import RateLimits
from alexandria.services.reading import ReadingService
from alexandria.services.search import SearchService
from alexandria.services.spaces import SpaceService
from alexandria.services.tables import TableService
from alexandria.storage.base import Store
from alexandria.storage.registry import open_store


class Core:
    def __init__(self, settings: Settings, store: Store | None = None, embedders: EmbedderRegistry | None = None):
        self.settings = settings
        self.store = store or open_store(settings)
        self.embedders = embedders or EmbedderRegistry(settings)
        self.keys = KeyService(self.store)
        self.catalog = CatalogService(self.store, self.embedders, settings)
        self.jobs = JobService(self.store, settings)
        self.documents = DocumentService(self.store, self.embedders, settings, self.jobs)
        self.jobs.register(INDEX_DOCUMENT, self.documents.run_index_jobs)
        self.search = SearchService(self.store, self.embedders, settings)
        self.spaces = SpaceService(self.store)
        self.access = AccessService(self.catalog, self.spaces)
        self.folders = FolderService(self.store)
        self.tables = TableService(self.store, settings)
        self.reading = ReadingService(self.store)
        self.rate_limits = RateLimits(settings.upserts_per_minute)
        self.dify_segments = DifySegments(self.store, self.embedders, settings)
        self.dify = DifyService(self.store, self.embedders, settings, self.jobs, self.catalog)
        self.dify_meta = DifyMeta(self.store, self.dify_segments)
        self.dify_retrieval = DifyRetrieval(self.store, self.search, settings, build_reranker(settings))
        self.jobs.register(INDEX_DIFY_DOCUMENT, self.dify.run_index_jobs)

    def close(self) -> None:
        self.jobs.stop_workers()
        self.tables.close()
        self.embedders.close()
        self.store.close()
