"""What both engines' SQL over tables share: the least-recently-used cache of built query databases, the lifecycle of
a cached connection (one query at a time; closed when evicted and idle), and the query loop around it. The
sandboxes themselves (how tables are copied, how a query is confined and run) are per engine."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from alexandria.domain.tables import QueryLimits, QueryResult, QueryTable, RowValue
from alexandria.errors import StorageError
from alexandria.tables.errors import QueryFailed
from alexandria.tables.schema import from_rows

CacheKey = tuple[tuple[int, int, str], ...]


class CachedDatabase:
    """One cached connection to a built query database: used by one query at a time (``lock``); once evicted
    (``retire``) it is closed now if idle, else by the query that holds it when that query ends."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.retired = False

    def retire(self) -> None:
        self.retired = True
        if self.lock.acquire(blocking=False):
            try:
                self.conn.close()
            finally:
                self.lock.release()


E = TypeVar("E", bound=CachedDatabase)


class CachedEngine(ABC, Generic[E]):
    """Entries keyed by the requested tables' (id, rows version, exposed name): a row write bumps the version, so a
    stale entry is never found again and ages out. Evicted entries are retired outside the lock."""

    def __init__(self) -> None:
        self._cache: OrderedDict[CacheKey, E] = OrderedDict()
        self._lock = threading.Lock()  # guards the cache
        self._build_lock = threading.Lock()  # one build at a time (builds of the same tables would be duplicates)

    def close(self) -> None:
        with self._lock:
            entries = list(self._cache.values())
            self._cache.clear()
        for entry in entries:
            entry.retire()

    @staticmethod
    def _key(tables: Sequence[QueryTable]) -> CacheKey:
        return tuple(sorted((t.table.pk, t.table.rows_version, t.name) for t in tables))

    def _get(self, key: CacheKey) -> E | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                self._cache.move_to_end(key)
            return entry

    def _put(self, key: CacheKey, entry: E, capacity: int) -> None:
        evicted: list[E] = []
        with self._lock:
            old = self._cache.pop(key, None)
            if old is not None:
                evicted.append(old)
            self._cache[key] = entry
            while len(self._cache) > max(capacity, 1):
                evicted.append(self._cache.popitem(last=False)[1])
        for e in evicted:
            e.retire()

    # --- what each engine provides ------------------------------------------------------------------------------
    @abstractmethod
    def _build(self, tables: Sequence[QueryTable]) -> tuple[CacheKey, E]:
        """A new query database holding ``tables``, and its cache key."""

    @abstractmethod
    def _load_error(self, exc: Exception) -> str | None:
        """The detail of a driver error raised while building (None: not the driver's, let it through)."""

    @abstractmethod
    def _run(self, entry: E, query: str, limits: QueryLimits) -> list[RowValue]:
        """Run the client's query in ``entry`` (held by this thread) within ``limits``."""

    def _connection_lost(self, entry: E, exc: Exception) -> bool:
        """Whether ``exc`` from :meth:`_run` means ``entry``'s connection is gone (then it is rebuilt once)."""
        return False

    # --- shared --------------------------------------------------------------------------------------------------
    def database(self, tables: Sequence[QueryTable], capacity: int) -> E:
        key = self._key(tables)
        entry = self._get(key)
        if entry is not None:
            return entry
        with self._build_lock:
            entry = self._get(key)
            if entry is not None:
                return entry
            try:
                built_key, entry = self._build(tables)
            except Exception as exc:
                detail = self._load_error(exc)
                if detail is None:
                    raise
                raise QueryFailed.not_loadable(detail) from exc
            self._put(built_key, entry, capacity)
            return entry

    def query(self, tables: Sequence[QueryTable], query: str, limits: QueryLimits) -> QueryResult:
        retried = False
        while True:
            entry = self.database(tables, limits.cached_databases)
            with entry.lock:
                if entry.retired:  # evicted between lookup and lock: build or find another
                    entry.conn.close()
                    continue
                try:
                    rows = self._run(entry, query, limits)
                except QueryFailed:
                    raise
                except Exception as exc:
                    if not self._connection_lost(entry, exc):
                        raise
                    if retried:
                        raise StorageError(f"the query database's connection was lost: {exc}") from exc
                    retried = True  # the connection is gone (server restart, idle timeout…): rebuild once
                    continue
                finally:
                    if entry.retired:  # evicted while running: retire() left the closing to us
                        entry.conn.close()
            return QueryResult(from_rows(rows), rows)

    def cached_keys(self) -> list[CacheKey]:
        with self._lock:
            return list(self._cache)
