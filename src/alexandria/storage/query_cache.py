"""The least-recently-used cache of built query databases that both backends' SQL-over-tables engines share."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from alexandria.domain.tables import QueryTable

CacheKey = tuple[tuple[int, int, str], ...]


class Retirable(Protocol):
    def retire(self) -> None: ...


E = TypeVar("E", bound=Retirable)


class CachedEngine(Generic[E]):
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

    def cached_keys(self) -> list[CacheKey]:
        with self._lock:
            return list(self._cache)
