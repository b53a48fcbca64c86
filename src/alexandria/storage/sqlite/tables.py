"""The embedded store's SQL over tables (``query_tables``, the sandbox in ``storage/sqlite/sql.py``); tables and
rows themselves are ``storage/common/tables.py``."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

from alexandria.domain.tables import QueryLimits, QueryResult, QueryTable
from alexandria.storage.common.tables import TableRows
from alexandria.storage.sqlite.db import SqliteEngine
from alexandria.storage.sqlite.sql import QueryEngine

_ENGINE_LOCK = threading.Lock()


class SqliteTables(TableRows):
    """Tables half of :class:`SqliteStore`."""

    engine: SqliteEngine

    def _query_engine(self) -> QueryEngine:
        engine: QueryEngine | None = self.__dict__.get("_sql_engine")
        if engine is None:
            with _ENGINE_LOCK:
                engine = self.__dict__.get("_sql_engine")
                if engine is None:
                    engine = QueryEngine(self.engine.path)
                    self.__dict__["_sql_engine"] = engine
                    # the cached in-memory databases are closed with the store (or when it is collected)
                    weakref.finalize(self, engine.close)
        return engine

    def query_tables(self, tables: Sequence[QueryTable], query: str, limits: QueryLimits) -> QueryResult:
        return self._query_engine().query(tables, query, limits)
