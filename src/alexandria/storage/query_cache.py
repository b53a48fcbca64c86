"""What both engines' SQL over tables share: the least-recently-used cache of built query databases, the connections
of a cached database (each used by one query at a time; another is opened when all are busy, so queries of the same
tables run side by side), and the query loop around them. The sandboxes themselves (how tables are copied, how a
query is confined and run) are per engine.

How many queries run at once is bounded above this module, by the SQL pool (``services/sql_pool.py``): a cached
database never has more connections than queries ran on it at the same time."""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from alexandria.domain.tables import QueryLimits, QueryResult, QueryTable, RowValue
from alexandria.errors import StorageError
from alexandria.tables.errors import QueryFailed
from alexandria.tables.schema import from_rows

CacheKey = tuple[tuple[int, int, str], ...]


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


class CachedDatabase(Generic[C]):
    """A built query database and its open connections, each used by one query at a time (``take`` / ``give``).
    Once evicted (``retire``) its idle connections are closed at once, busy ones when their query ends."""

    def __init__(self, key: CacheKey, first: C) -> None:
        self.key = key
        self._idle: list[C] = [first]
        self._open = 1
        self._lock = threading.Lock()
        self.retired = False

    def take(self) -> C | None:
        """An idle connection, now busy (None: all are busy, or the database was retired)."""
        with self._lock:
            if self.retired or not self._idle:
                return None
            return self._idle.pop()

    def add(self, conn: C) -> bool:
        """Count a new, busy connection to this database (False: retired meanwhile; ``conn`` was closed)."""
        with self._lock:
            if not self.retired:
                self._open += 1
                return True
        conn.close()
        return False

    def give(self, conn: C, *, broken: bool = False) -> None:
        """Hand back a busy connection: idle again, or closed if it is broken or the database was retired."""
        with self._lock:
            keep = not (broken or self.retired)
            if keep:
                self._idle.append(conn)
            else:
                self._open -= 1
        if not keep:
            conn.close()

    def retire(self) -> None:
        with self._lock:
            self.retired = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for conn in idle:
            conn.close()

    def connections(self) -> int:
        """Connections open (idle or busy)."""
        with self._lock:
            return self._open

    @contextlib.contextmanager
    def borrow(self) -> Iterator[C]:
        """An idle connection for the duration of the block (tests look inside the sandbox with it)."""
        conn = self.take()
        if conn is None:
            raise RuntimeError("no idle connection")
        try:
            yield conn
        finally:
            self.give(conn)


E = TypeVar("E", bound="CachedDatabase[Any]")


class CachedEngine(ABC, Generic[E, C]):
    """Entries keyed by the requested tables' (id, rows version, exposed name): a row write bumps the version, so a
    stale entry is never found again and ages out. Evicted entries are retired outside the lock."""

    def __init__(self) -> None:
        self._cache: OrderedDict[CacheKey, E] = OrderedDict()
        self._lock = threading.Lock()  # guards the cache and the build locks
        self._building: dict[CacheKey, threading.Lock] = {}  # one build at a time per set of tables

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

    def _put(self, entry: E, capacity: int) -> None:
        evicted: list[E] = []
        with self._lock:
            old = self._cache.pop(entry.key, None)
            if old is not None:
                evicted.append(old)
            self._cache[entry.key] = entry
            while len(self._cache) > max(capacity, 1):
                evicted.append(self._cache.popitem(last=False)[1])
        for e in evicted:
            e.retire()

    def _forget(self, entry: E) -> None:
        """Take ``entry`` out of the cache and retire it (its connection is lost, or its copy is stale)."""
        with self._lock:
            if self._cache.get(entry.key) is entry:
                del self._cache[entry.key]
        entry.retire()

    # --- what each engine provides ------------------------------------------------------------------------------
    @abstractmethod
    def _build(self, tables: Sequence[QueryTable]) -> E:
        """A new query database holding ``tables`` (keyed by the rows versions it copied), with one connection."""

    @abstractmethod
    def _connect(self, entry: E, tables: Sequence[QueryTable]) -> C | None:
        """Another connection to ``entry``'s database (None: the tables changed since it was built)."""

    @abstractmethod
    def _load_error(self, exc: Exception) -> str | None:
        """The detail of a driver error raised while building (None: not the driver's, let it through)."""

    @abstractmethod
    def _run(self, entry: E, conn: C, query: str, limits: QueryLimits) -> list[RowValue]:
        """Run the client's query on ``conn`` (held by this thread) within ``limits`` (started: with a deadline)."""

    def _connection_lost(self, conn: C, exc: Exception) -> bool:
        """Whether ``exc`` from :meth:`_run` means the database's connections are gone (then it is rebuilt once)."""
        return False

    # --- shared --------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _loading(self) -> Iterator[None]:
        """Driver errors raised while copying tables, as the query's error."""
        try:
            yield
        except Exception as exc:
            detail = self._load_error(exc)
            if detail is None:
                raise
            raise QueryFailed.not_loadable(detail) from exc

    def database(self, tables: Sequence[QueryTable], capacity: int) -> E:
        key = self._key(tables)
        entry = self._get(key)
        if entry is not None:
            return entry
        with self._lock:
            lock = self._building.setdefault(key, threading.Lock())
        try:
            with lock:
                entry = self._get(key)
                if entry is not None:
                    return entry
                with self._loading():
                    entry = self._build(tables)
                self._put(entry, capacity)
                return entry
        finally:
            with self._lock:
                self._building.pop(key, None)

    def _checkout(self, tables: Sequence[QueryTable], capacity: int) -> tuple[E, C]:
        """A cached database of ``tables`` and one of its connections, now busy."""
        while True:
            entry = self.database(tables, capacity)
            conn = entry.take()
            if conn is not None:
                return entry, conn
            if entry.retired:  # evicted between lookup and take: build or find another
                continue
            with self._loading():
                fresh = self._connect(entry, tables)
            if fresh is None:  # the tables changed since: a new build, under their new versions
                self._forget(entry)
                continue
            if entry.add(fresh):
                return entry, fresh

    def query(self, tables: Sequence[QueryTable], query: str, limits: QueryLimits) -> QueryResult:
        limits = limits.started()
        retried = False
        while True:
            if limits.time_left() <= 0:  # spent queueing, building or reconnecting
                raise QueryFailed.timed_out(limits.timeout_ms)
            entry, conn = self._checkout(tables, limits.cached_databases)
            broken = False
            try:
                rows = self._run(entry, conn, query, limits)
            except QueryFailed:
                raise
            except Exception as exc:
                if not self._connection_lost(conn, exc):
                    raise
                broken = True
                self._forget(entry)  # its other connections are most likely gone too
                if retried:
                    raise StorageError(f"the query database's connection was lost: {exc}") from exc
                retried = True  # the connection is gone (server restart, idle timeout…): rebuild once
                continue
            finally:
                entry.give(conn, broken=broken)
            return QueryResult(from_rows(rows), rows)

    def cached_keys(self) -> list[CacheKey]:
        with self._lock:
            return list(self._cache)

    def cached(self, key: CacheKey) -> E:
        with self._lock:
            return self._cache[key]
