"""Embedding lanes: document embeddings (writes) never take the CPU from query embeddings (searches).

* The **write lane** is one dedicated thread that runs every document embedding of the process (sync upserts, index
  workers, Dify segments, the CLI), one batch at a time, in arrival order, at a lower CPU priority (``nice``, Linux).
  The local model's document session is built on that thread, so ONNX Runtime's intra-op threads inherit the
  priority too. Callers block on the batch's future without using any CPU.
* The **query lane** is inline: a search embeds its one short text in its own request thread, on a separate
  single-threaded session (``ALEXANDRIA_QUERY_EMBEDDER_THREADS``), at normal priority. So a query never waits behind
  a document batch, and the two sessions together use no more threads than the cores plus one.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from alexandria.ingest.base import Embedder, Tokenizer, Vectors

log = logging.getLogger(__name__)

T = TypeVar("T")
THREAD_NAME = "alexandria-embed-write"


def lower_thread_priority(increment: int) -> bool:
    """Raise the calling thread's nice value by ``increment`` (Linux: nice is per thread, inherited by the threads
    it creates). Returns False where that is not possible."""
    if increment <= 0 or not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + increment, 19))
    except OSError as exc:  # pragma: no cover - e.g. a sandbox forbidding it
        log.warning("cannot lower the priority of this thread: %s", exc)
        return False
    return True


class WriteLane:
    """The one thread that runs document embeddings (see the module docstring). ``started`` and ``finished`` count
    tasks, for tests and monitoring."""

    def __init__(self, nice: int) -> None:
        self.nice = nice
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=THREAD_NAME, initializer=self._init_thread)
        self._lane_thread: int | None = None
        self._lock = threading.Lock()
        self.submitted = 0
        self.finished = 0

    def _init_thread(self) -> None:
        self._lane_thread = threading.get_ident()
        lower_thread_priority(self.nice)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        with self._lock:
            self.submitted += 1
        future = self._executor.submit(fn)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[T]) -> None:
        with self._lock:
            self.finished += 1

    @property
    def pending(self) -> int:
        """Tasks submitted and not finished (running or queued)."""
        with self._lock:
            return self.submitted - self.finished

    def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the lane and wait for its result (inline if already on the lane)."""
        if threading.get_ident() == self._lane_thread:
            return fn()
        return self.submit(fn).result()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class _Wrapping:
    """An embedder around ``inner``: its name, dimension, token limit and tokenizer are the inner model's."""

    inner: Embedder

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    @property
    def tokenizer(self) -> Tokenizer:
        return self.inner.tokenizer

    @property
    def scripts(self) -> frozenset[str] | None:
        return self.inner.scripts


def _checked(texts: Sequence[str]) -> bool:
    """Whether ``texts`` holds any text (a bare string is refused: it is not a sequence of texts)."""
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not a single string")
    return bool(texts)


class LaneEmbedder(_Wrapping):
    """An embedder whose ``embed`` runs on the write lane, ``batch`` texts per task (so that several writers take
    turns and none holds the lane for long)."""

    def __init__(self, inner: Embedder, lane: WriteLane, batch: int) -> None:
        self.inner = inner
        self.lane = lane
        self.batch = max(batch, 1)

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not _checked(texts):
            return self.inner.embed(texts)
        parts = [
            self.lane.run(functools.partial(self.inner.embed, texts[i : i + self.batch]))
            for i in range(0, len(texts), self.batch)
        ]
        return np.concatenate(parts).astype(np.float32, copy=False)


class QueryCache(_Wrapping):
    """An embedder that remembers the vectors of its last ``size`` distinct texts (least recently used out): a
    repeated search (pagination, a client retrying, an agent asking again, Dify's hit testing) skips the model.
    Vectors are handed out read-only, so no caller can change a cached one."""

    def __init__(self, inner: Embedder, size: int) -> None:
        self.inner = inner
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray[Any, np.dtype[np.float32]]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not _checked(texts):
            return self.inner.embed(texts)
        with self._lock:
            found = [self._vectors.get(t) for t in texts]
            for t, v in zip(texts, found, strict=True):
                if v is not None:
                    self._vectors.move_to_end(t)
                    self.hits += 1
        missing = [t for t, v in zip(texts, found, strict=True) if v is None]
        if missing:
            fresh = self.inner.embed(missing)
            computed = dict(zip(missing, fresh, strict=True))
            with self._lock:
                for t, v in computed.items():
                    v = np.array(v, dtype=np.float32)
                    v.setflags(write=False)
                    self._vectors[t] = v
                    self._vectors.move_to_end(t)
                    computed[t] = v
                while len(self._vectors) > self.size:
                    self._vectors.popitem(last=False)
        else:
            computed = {}
        rows = [v if v is not None else computed[t] for t, v in zip(texts, found, strict=True)]
        return np.stack(rows).astype(np.float32, copy=False)
