"""The embedded store's keyword index: one tantivy index per data source (``<data>/keyword/ds_<id>/``), BM25 top-k
by block-max WAND, so a query's cost follows k rather than the number of chunks it matches.

Chunks are indexed as pre-analysed terms (:func:`alexandria.search.analysis.document_terms`, joined by spaces and
split again by tantivy's whitespace tokenizer), so the analysis is Python's, the same for every engine.

Like the HNSW cache, the index mirrors the database, which is the source of truth: a sidecar file
(``ds_<id>.json``) records the data source's ``vector_version`` (bumped with every change to its chunks) the index
reflects, written after each tantivy commit. When it differs from the database (a crash between the two commits,
another process wrote, the index is missing or unreadable) the index is reconciled by id set difference (chunk ids
are never reused), which for a missing index is a full build from the chunk rows.

BM25 statistics are tantivy's, Lucene's semantics: a deleted chunk counts in N, a term's document frequency and the
average length until its segment is merged. A data source of at most :data:`COMPACT_BELOW` chunks is rebuilt (at its
next search) after a change that deleted chunks, so small data sources always have exact statistics; larger ones
drift until tantivy's merges purge the deleted chunks (rebuilding them in a search would stall it). A chunk's length
is tantivy's one-byte field norm: exact up to 40 terms, rounded down to one of 256 steps above (as Lucene does).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import tantivy
from tantivy import Occur, Query

from alexandria.search.analysis import document_terms
from alexandria.search.keyword import BM25_B, BM25_K1, bm25_bound

log = logging.getLogger(__name__)

ID = "id"
TERMS = "terms"
TOKENIZER = "alexandria_terms"  # whitespace: the terms are analysed in Python
assert (BM25_K1, BM25_B) == (1.2, 0.75)  # tantivy's BM25 constants, fixed in its code

COMPACT_BELOW = 2_000
TERM_SET_MAX = 4_096  # a filter's candidates up to this many: a term-set query; more: oversampled top-k, post-filtered
WRITER_HEAP = 32_000_000
PENDING_MAX = 50_000  # changed chunks waiting for one commit, at most
FLUSH_AFTER_S = 1.0  # how long a change waits for its commit when nothing reads the index
WRITER_WAIT_S = 10.0  # how long a writer waits for another's lock on the index directory
BULK_HEAP = 256_000_000
BULK_BATCH = 20_000  # rows read per batch when (re)building


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field(ID, stored=False, indexed=True, fast=True)
    builder.add_text_field(TERMS, stored=False, tokenizer_name=TOKENIZER, index_option="freq")
    return builder.build()


SCHEMA = _schema()


def _document(pk: int, text: str) -> tantivy.Document:
    doc = tantivy.Document()
    doc.add_unsigned(ID, pk)
    doc.add_text(TERMS, " ".join(document_terms(text)))
    return doc


class DataSourceKeywords:
    """The keyword index of one data source and the ``vector_version`` it reflects. Writes and reconciliation hold
    :attr:`lock`; searches need no lock (a searcher is a consistent snapshot)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.meta_path = directory.with_suffix(".json")
        self.lock = threading.RLock()
        self.version = -1
        self.deleted = 0  # chunks deleted since the last full build (an upper bound on those tantivy still counts)
        self._pending: tantivy.IndexWriter | None = None  # changes applied, not yet committed
        self._pending_ops = 0
        self._timer: threading.Timer | None = None
        self.index = self._open()

    def _open(self) -> tantivy.Index:
        try:
            existed = (self.directory / "meta.json").exists()
            if not existed:  # what a sidecar says of a missing index is void
                self.meta_path.unlink(missing_ok=True)
            self.directory.mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(SCHEMA, path=str(self.directory), reuse=True)
            index.searcher()  # opens every segment: a corrupt one fails here, not in a search
            self._read_meta(existed)
        except BaseException as exc:  # unreadable (tantivy panics are BaseExceptions): rebuilt from the database
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            log.warning("discarding keyword index %s: %s", self.directory, exc)
            shutil.rmtree(self.directory, ignore_errors=True)
            self.meta_path.unlink(missing_ok=True)
            self.directory.mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(SCHEMA, path=str(self.directory), reuse=False)
            self.version, self.deleted = -1, 0
        index.config_reader(reload_policy="Manual")  # reloaded after each commit, and when found out of step
        index.register_tokenizer(TOKENIZER, tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build())
        return index

    def refresh(self) -> None:
        """Re-read what another process (or a crashed write) left: the sidecar and the last tantivy commit."""
        self.flush()
        self._read_meta((self.directory / "meta.json").exists())
        self.index.reload()

    def _read_meta(self, index_exists: bool) -> None:
        meta = json.loads(self.meta_path.read_text()) if index_exists and self.meta_path.exists() else {}
        self.version = int(meta.get("version", -1))  # a missing index reflects nothing
        self.deleted = int(meta.get("deleted", 0))

    def _save_meta(self) -> None:
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": self.version, "deleted": self.deleted}))
        tmp.replace(self.meta_path)

    def _new_writer(self, heap: int, threads: int) -> tantivy.IndexWriter:
        """A writer, once the directory's lock is free: another process (or store) holds it while its changes wait
        for their commit (at most :data:`FLUSH_AFTER_S`)."""
        deadline = time.monotonic() + WRITER_WAIT_S
        while True:
            try:
                return self.index.writer(heap_size=heap, num_threads=threads)
            except ValueError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def apply(self, removed: Sequence[int], added: Sequence[tuple[int, str]], version: int) -> None:
        """Mirror one committed change (chunk ids removed, ``(id, text)`` added) and take ``version``. The change
        waits in an open writer for :meth:`flush` (before the next read of the index, :data:`FLUSH_AFTER_S` later,
        at close, or once :data:`PENDING_MAX` changes wait), so consecutive writes share one tantivy commit (each
        costs fsyncs, ~10-100 ms); a crash before it leaves the sidecar behind, and the index is reconciled."""
        with self.lock:
            if self._pending is None:
                self._pending = self._new_writer(WRITER_HEAP, 1)
            try:
                for pk in removed:
                    self._pending.delete_documents_by_term(ID, pk)
                for pk, text in added:
                    self._pending.add_document(_document(pk, text))
            except BaseException:
                self.discard_pending()
                raise
            self.deleted += len(removed)
            self.version = version
            self._pending_ops += len(removed) + len(added)
            if self._pending_ops >= PENDING_MAX:
                self.flush()
            elif self._timer is None:
                self._timer = threading.Timer(FLUSH_AFTER_S, self._timed_flush)
                self._timer.daemon = True
                self._timer.start()

    def _timed_flush(self) -> None:
        try:
            self.flush()
        except Exception:  # the next read retries, or reconciles
            log.exception("keyword index %s: deferred commit failed", self.directory.name)

    def flush(self) -> None:
        """Commit the changes waiting in the open writer (if any) and record their version in the sidecar. A failed
        commit leaves the index out of step (version -1): the next search reconciles it."""
        if self._pending is None:
            return
        with self.lock:
            writer, self._pending, self._pending_ops = self._pending, None, 0
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if writer is None:
                return
            try:
                writer.commit()
            except BaseException:
                self.version = -1
                writer.rollback()
                raise
            finally:
                writer.wait_merging_threads()
            self.index.reload()
            self._save_meta()

    def discard_pending(self) -> None:
        """Drop uncommitted changes (a rebuild replaces them, or the index is deleted): out of step until then."""
        with self.lock:
            writer, self._pending, self._pending_ops = self._pending, None, 0
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if writer is not None:
                self.version = -1
                try:
                    writer.rollback()
                finally:
                    writer.wait_merging_threads()

    def start(self, version: int) -> None:
        """Record that this (new, empty) index reflects ``version`` of a data source that has no chunks yet."""
        with self.lock:
            self.version, self.deleted = version, 0
            self._save_meta()

    def needs_compaction(self) -> bool:
        live = self.num_docs()
        return self.deleted > 0 and live <= COMPACT_BELOW

    def building(self) -> KeywordBuild:
        """A build that replaces the whole index in one commit (:class:`KeywordBuild`)."""
        with self.lock:
            self.discard_pending()  # one writer at a time: what waited is replaced by what the build writes
            return KeywordBuild(self, self._new_writer(BULK_HEAP, 2))

    def rebuild(self, rows: Iterable[tuple[int, str]], version: int) -> int:
        """Replace the whole index with ``rows`` (``(id, text)``) in one commit; returns how many were indexed."""
        with self.lock:
            build = self.building()
            try:
                build.add(rows)
            except BaseException:
                build.abandon()
                raise
            return build.commit(version)

    def _built(self, version: int) -> None:
        """A build committed: the index reflects ``version``, with nothing deleted since."""
        self.index.reload()
        self.deleted, self.version = 0, version
        self._save_meta()

    def searcher(self) -> tantivy.Searcher:
        """A searcher over every change applied so far (committing those that wait)."""
        self.flush()
        return self.index.searcher()

    def num_docs(self) -> int:
        return int(self.searcher().num_docs)

    def ids(self) -> list[int]:
        """Every chunk id in the index (live documents only)."""
        searcher = self.searcher()
        n = int(searcher.num_docs)
        if n == 0:
            return []
        hits = searcher.search(Query.all_query(), n, count=False).hits
        return [int(v or 0) for v in searcher.fast_field_values(ID, [address for _, address in hits])]

    def reconcile(self, conn: sqlite3.Connection, data_source_id: int, db_version: int) -> tuple[int, int]:
        """Bring the index in line with the data source's chunk rows (read through ``conn``, one snapshot) and
        record ``db_version``; returns ``(added, removed)``. An empty index is built in one commit."""
        with self.lock:
            self.flush()
            db_ids = [
                int(r[0]) for r in conn.execute("SELECT id FROM chunks WHERE data_source_id = ?", (data_source_id,))
            ]
            have = self.ids()
            if not have or self.needs_compaction():
                log.info("building the keyword index of data source %d (%d chunks)", data_source_id, len(db_ids))
                rows = conn.execute("SELECT id, text FROM chunks WHERE data_source_id = ?", (data_source_id,))
                added = self.rebuild(((int(r[0]), str(r[1])) for r in rows), db_version)
                return added, len(have)
            in_db, in_index = set(db_ids), set(have)
            missing = sorted(in_db - in_index)
            extra = sorted(in_index - in_db)
            texts: list[tuple[int, str]] = []
            for start in range(0, len(missing), 4096):
                part = missing[start : start + 4096]
                marks = ",".join("?" * len(part))
                texts += [
                    (int(r[0]), str(r[1]))
                    for r in conn.execute(f"SELECT id, text FROM chunks WHERE id IN ({marks})", part)
                ]
            self.apply(extra, texts, db_version)
            if self.needs_compaction():
                rows = conn.execute("SELECT id, text FROM chunks WHERE data_source_id = ?", (data_source_id,))
                self.rebuild(((int(r[0]), str(r[1])) for r in rows), db_version)
            return len(missing), len(extra)

    # --- search ------------------------------------------------------------------------------------------------

    @staticmethod
    def _terms_query(terms: Sequence[str]) -> Query:
        return Query.boolean_query(
            [(Occur.Should, Query.term_query(SCHEMA, TERMS, t, index_option="freq")) for t in terms]
        )

    @staticmethod
    def _run(searcher: tantivy.Searcher, query: Query, limit: int) -> list[tuple[int, float]]:
        hits = searcher.search(query, limit, count=False).hits
        if not hits:
            return []
        ids = searcher.fast_field_values(ID, [address for _, address in hits])
        return [(int(pk or 0), float(score)) for (score, _), pk in zip(hits, ids, strict=True)]

    @classmethod
    def _run_through_ties(cls, searcher: tantivy.Searcher, query: Query, limit: int) -> list[tuple[int, float]]:
        """The best ``limit`` hits, and every hit tied with the last of them: which of several chunks tied at the
        cut tantivy keeps depends on its segments, so the set is closed under ties and the caller's ranking (ties
        by chunk id) is the same however the index was built (in bulk, one document at a time, compacted)."""
        while True:
            hits = cls._run(searcher, query, limit + 1)
            if len(hits) <= limit or hits[limit][1] < hits[limit - 1][1]:
                return hits[:limit]
            limit *= 2

    @staticmethod
    def _ranked(hits: Iterable[tuple[int, float]], k: int) -> list[tuple[int, float]]:
        return sorted(hits, key=lambda h: (-h[1], h[0]))[:k]

    def search(self, terms: Sequence[str], k: int) -> list[tuple[int, float]]:
        """The ``k`` best chunks by BM25 for an OR of ``terms``: ``(id, score)``, best first."""
        if not terms or k <= 0:
            return []
        return self._ranked(self._run_through_ties(self.searcher(), self._terms_query(terms), k), k)

    def scores(self, terms: Sequence[str], chunk_pks: Sequence[int]) -> list[tuple[int, float]]:
        """BM25 of exactly these chunks (those matching no term are left out)."""
        if not terms or not chunk_pks:
            return []
        searcher = self.searcher()
        within = Query.const_score_query(Query.term_set_query(SCHEMA, ID, list(chunk_pks)), 0.0)
        query = Query.boolean_query([(Occur.Must, within), (Occur.Must, self._terms_query(terms))])
        return self._run(searcher, query, len(chunk_pks))

    def search_within(self, terms: Sequence[str], k: int, candidates: Sequence[int]) -> list[tuple[int, float]]:
        """The ``k`` best of the ``candidates`` (chunk ids), exactly: a term-set query over few candidates; over
        many, the unfiltered top hits oversampled by the candidates' share and post-filtered, widened until ``k``
        survive or the matches are exhausted."""
        if not terms or k <= 0 or not candidates:
            return []
        if len(candidates) <= TERM_SET_MAX:
            return self._ranked(self.scores(terms, candidates), k)
        allowed = set(candidates)
        searcher = self.searcher()
        query = self._terms_query(terms)
        total = max(int(searcher.num_docs), 1)
        want = min(total, math.ceil(k * total / len(allowed) * 2) + k)
        while True:
            hits = self._run_through_ties(searcher, query, want)
            kept = [h for h in hits if h[0] in allowed]
            if len(kept) >= k or len(hits) < want:  # k survived, or every match was seen
                return self._ranked(kept, k)
            if want * 4 >= total:
                return self._ranked(self.scores(terms, candidates), k)
            want *= 4

    def score_bound(self, terms: Sequence[str]) -> float:
        """:func:`bm25_bound` with this index's statistics: N counts the chunks deleted since the last build, an
        upper bound on those tantivy still counts, so the bound holds every score."""
        if not terms:
            return 0.0
        searcher = self.searcher()
        total = int(searcher.num_docs) + self.deleted
        return bm25_bound(total, [int(searcher.doc_freq(TERMS, t)) for t in terms])


class KeywordBuild:
    """A data source's whole keyword index replaced in one tantivy commit. Chunks are added as they come (a bulk load
    adds each batch while it writes their rows, so their analysis overlaps the HNSW graph's build); none is visible
    until :meth:`commit`, which a load calls once the chunks' own transaction has committed, and :meth:`abandon`
    (or a crash) leaves the index's last commit as it was."""

    def __init__(self, index: DataSourceKeywords, writer: tantivy.IndexWriter) -> None:
        self.index = index
        self.writer: tantivy.IndexWriter | None = writer
        self.count = 0
        self.started = time.monotonic()
        writer.delete_all_documents()

    def add(self, rows: Iterable[tuple[int, str]]) -> None:
        """Index chunks ``(id, text)``."""
        if self.writer is None:
            raise RuntimeError("keyword build already finished")
        for pk, text in rows:
            self.writer.add_document(_document(pk, text))
            self.count += 1
            if self.count % 100_000 == 0:
                log.info(
                    "keyword index %s: %d chunks (%.0f s)",
                    self.index.directory.name,
                    self.count,
                    time.monotonic() - self.started,
                )

    def commit(self, version: int) -> int:
        """Commit what was added, as the index of ``version``; returns how many chunks it holds."""
        writer, self.writer = self.writer, None
        if writer is None:
            raise RuntimeError("keyword build already finished")
        with self.index.lock:
            try:
                writer.commit()
            except BaseException:
                writer.rollback()
                raise
            finally:
                writer.wait_merging_threads()  # releases the writer's lock on the directory
            self.index._built(version)
        return self.count

    def abandon(self) -> None:
        """Drop what was added (the load failed); a no-op once committed or abandoned."""
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.rollback()
            finally:
                writer.wait_merging_threads()


class KeywordIndexes:
    """All data sources' keyword indexes of one data directory, opened lazily."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._indexes: dict[int, DataSourceKeywords] = {}
        self._lock = threading.Lock()

    def _path(self, data_source_id: int) -> Path:
        return self.directory / f"ds_{int(data_source_id)}"

    def get(self, data_source_id: int) -> DataSourceKeywords:
        with self._lock:
            idx = self._indexes.get(data_source_id)
            if idx is None:
                idx = DataSourceKeywords(self._path(data_source_id))
                self._indexes[data_source_id] = idx
            return idx

    def flush_all(self) -> None:
        with self._lock:
            indexes = list(self._indexes.values())
        for idx in indexes:
            idx.flush()

    def drop(self, data_source_id: int) -> None:
        """Forget a data source's index and remove its files (a deleted data source, or a new one reusing its id)."""
        with self._lock:
            idx = self._indexes.pop(data_source_id, None)
        if idx is not None:
            idx.discard_pending()
        path = self._path(data_source_id)
        shutil.rmtree(path, ignore_errors=True)
        for p in (path.with_suffix(".json"), path.with_suffix(".tmp")):
            p.unlink(missing_ok=True)
