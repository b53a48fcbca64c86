"""Re-analysing a store's keyword index when the analyzer's rules changed (``search/analysis.py``,
``ANALYZER_VERSION``): each data source records the version its keyword index was built with
(``data_sources.keyword_analyzer``; 0 for indexes built before the analyzer existed, by FTS5's ``porter`` tokenizer
or PostgreSQL's ``english`` configuration); opening a store rebuilds every data source whose version differs, one
data source per transaction (an interrupted upgrade resumes where it stopped), reading its chunks' text in batches
and logging its progress. The engines' part is :class:`KeywordRebuild`: what the old index was and how analysed
chunks are written."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from alexandria.search.analysis import ANALYZER_VERSION, document_terms
from alexandria.storage.database import Conn, Database

log = logging.getLogger(__name__)

BATCH = 2_000  # chunks read and written at a time
Progress = Callable[[int, int, int], None]  # (data source id, chunks done, chunks in all)


class KeywordRebuild(Protocol):
    def start(self, conn: Conn, ds_id: int) -> None:
        """Drop the data source's keyword index and make an empty one."""
        ...

    def add(self, conn: Conn, ds_id: int, analysed: Sequence[tuple[int, list[str]]]) -> None:
        """Index chunks ``(chunk id, its terms)``."""
        ...

    def finish(self, conn: Conn, ds_id: int) -> None:
        """The statistics that follow from the new index (document lengths)."""
        ...


def log_progress(ds_id: int, done: int, total: int) -> None:
    log.info("re-analysing the keyword index of data source %d: %d/%d chunks", ds_id, done, total)


def stale_data_sources(db: Database) -> list[int]:
    with db.read() as conn:
        rows = conn.all("SELECT id FROM data_sources WHERE keyword_analyzer <> ? ORDER BY id", (ANALYZER_VERSION,))
    return [int(r[0]) for r in rows]


def reanalyze_stale(db: Database, rebuild: KeywordRebuild, on_progress: Progress = log_progress) -> list[int]:
    """Rebuild the keyword index of every data source built with other rules; the ids rebuilt."""
    done_ids: list[int] = []
    for ds_id in stale_data_sources(db):
        with db.write() as conn:
            version = conn.scalar(
                f"SELECT keyword_analyzer FROM data_sources WHERE id = ?{db.dialect.for_update}", (ds_id,)
            )
            if version is None or int(version) == ANALYZER_VERSION:  # deleted, or rebuilt by another process
                continue
            total = int(conn.scalar("SELECT count(*) FROM chunks WHERE data_source_id = ?", (ds_id,)))
            rebuild.start(conn, ds_id)
            done, last, reported = 0, 0, time.monotonic()
            on_progress(ds_id, 0, total)
            while True:
                rows = conn.all(
                    "SELECT id, text FROM chunks WHERE data_source_id = ? AND id > ? ORDER BY id LIMIT ?",
                    (ds_id, last, BATCH),
                )
                if not rows:
                    break
                rebuild.add(conn, ds_id, [(int(r[0]), document_terms(str(r[1]))) for r in rows])
                done += len(rows)
                last = int(rows[-1][0])
                if time.monotonic() - reported >= 5.0:
                    on_progress(ds_id, done, total)
                    reported = time.monotonic()
            rebuild.finish(conn, ds_id)
            conn.execute("UPDATE data_sources SET keyword_analyzer = ? WHERE id = ?", (ANALYZER_VERSION, ds_id))
            on_progress(ds_id, done, total)
        done_ids.append(ds_id)
    return done_ids
