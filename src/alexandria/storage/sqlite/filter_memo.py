"""The last few filters' passing documents and matrix rows, per data source, reused while nothing changed.

A filter repeats: every search through a Dust view carries the view's ``parentsIn``, an application searches under
the same tags again and again, and one hybrid search resolves its filter twice (keyword and vector). Resolving it
costs a SQL query over the passing documents plus a binary search of their rows in the exact matrix: at 1,000,000
chunks under a tag on 10% of the documents, 8.7 + 5 ms each time (`bench/scale.py`'s store, in process).

An entry is valid while its stamp holds: the reader connection's ``PRAGMA data_version`` (which changes whenever any
other connection, this process's writer or another process, commits), that connection itself (the pragma is
per connection), and the matrix's ``generation`` (new whenever its rows change). So a write of any kind (a
document's tags or parents updated, chunks added) is never answered from the memo.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np
import numpy.typing as npt

IdArray = npt.NDArray[np.int64]
Stamp = tuple[int, int, int]  # id of the reader connection, its data_version, the matrix's generation
SIZE = 64  # entries kept (least recently used dropped)


class FilterMemo:
    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[Stamp, IdArray, IdArray]] = OrderedDict()

    def get(self, key: Hashable, stamp: Stamp) -> tuple[IdArray, IdArray] | None:
        """The documents and rows stored under ``key`` with this very stamp, else None."""
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] != stamp:
                return None
            self._items.move_to_end(key)
            return item[1], item[2]

    def put(self, key: Hashable, stamp: Stamp, documents: IdArray, rows: IdArray) -> None:
        with self._lock:
            self._items[key] = (stamp, documents, rows)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
