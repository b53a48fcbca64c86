"""The embedded store's tables: rows are ``storage/common/tables.py``; here only its SQL sandbox
(``storage/sqlite/sql.py``: in-memory copies of the queried tables)."""

from __future__ import annotations

from alexandria.storage.common.tables import TableRows
from alexandria.storage.sqlite.db import SqliteEngine
from alexandria.storage.sqlite.sql import QueryEngine


class SqliteTables(TableRows):
    """Tables half of :class:`SqliteStore`."""

    engine: SqliteEngine

    def _new_sandbox(self) -> QueryEngine:
        return QueryEngine(self.engine.path)
