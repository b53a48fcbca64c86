"""Dify segments and their child chunks, written once for both engines over the facade. A segment's enabled texts
become its document's chunks through the index (see ``storage/common/dify_documents.py``); these rows are the
segments' own bookkeeping."""

from __future__ import annotations

import json
from collections.abc import Sequence

from alexandria.domain.dify import ChildChunk, ChildWrite, Segment, SegmentWrite
from alexandria.domain.models import DataSource
from alexandria.storage import rows
from alexandria.storage.database import Conn, Database, Row
from alexandria.storage.errors import missing_row

SEGMENT_COLS = (
    "id, uuid, data_source_id, document_pk, position, content, answer, keywords, hash, index_node_id, word_count, "
    "tokens, enabled, status, error, hit_count, created_at, updated_at, disabled_at, indexing_at, completed_at, "
    "stopped_at"
)
CHILD_COLS = "id, uuid, segment_pk, document_pk, position, content, word_count, type, created_at, updated_at"


def opt_int(v: object) -> int | None:
    return None if v is None else int(str(v))


def segment_row(r: Row, children: tuple[ChildChunk, ...] = ()) -> Segment:
    return Segment(
        pk=int(r[0]),
        uuid=str(r[1]),
        data_source_id=int(r[2]),
        document_pk=int(r[3]),
        position=int(r[4]),
        content=str(r[5]),
        answer=None if r[6] is None else str(r[6]),
        keywords=tuple(rows.js(r[7], [])),
        hash=str(r[8]),
        index_node_id=str(r[9]),
        word_count=int(r[10]),
        tokens=int(r[11]),
        enabled=bool(r[12]),
        status=str(r[13]),
        error=None if r[14] is None else str(r[14]),
        hit_count=int(r[15]),
        created_at=int(r[16]),
        updated_at=int(r[17]),
        disabled_at=opt_int(r[18]),
        indexing_at=opt_int(r[19]),
        completed_at=opt_int(r[20]),
        stopped_at=opt_int(r[21]),
        children=children,
    )


def child_row(r: Row) -> ChildChunk:
    return ChildChunk(
        pk=int(r[0]),
        uuid=str(r[1]),
        segment_pk=int(r[2]),
        document_pk=int(r[3]),
        position=int(r[4]),
        content=str(r[5]),
        word_count=int(r[6]),
        type=str(r[7]),
        created_at=int(r[8]),
        updated_at=int(r[9]),
    )


def insert_children(conn: Conn, seg_pk: int, doc_pk: int, children: Sequence[ChildWrite], now: int) -> list[int]:
    """Insert a segment's child chunks at positions 1, 2, ...; their ids in that order."""
    conn.executemany(
        "INSERT INTO child_chunks (uuid, segment_pk, document_pk, position, content, word_count, type, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (rows.new_uuid(), seg_pk, doc_pk, i + 1, c.content, len(c.content), c.type, now, now)
            for i, c in enumerate(children)
        ],
    )
    if not children:
        return []
    return [
        int(r[0]) for r in conn.all("SELECT id FROM child_chunks WHERE segment_pk = ? ORDER BY position", (seg_pk,))
    ]


def insert_segment(
    conn: Conn, ds_id: int, doc_pk: int, position: int, seg: SegmentWrite, now: int
) -> tuple[int, list[int]]:
    """Insert a completed segment and its child chunks; ``(segment id, child ids in order)``."""
    pk = conn.returning_id(
        "INSERT INTO segments (uuid, data_source_id, document_pk, position, content, answer, keywords, hash, "
        "index_node_id, word_count, tokens, enabled, status, created_at, updated_at, indexing_at, completed_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, TRUE, 'completed', ?, ?, ?, ?) RETURNING id",
        (rows.new_uuid(), ds_id, doc_pk, position, seg.content, seg.answer, json.dumps(list(seg.keywords)), seg.hash,
         rows.new_uuid(), seg.word_count, seg.tokens, now, now, now, now),
    )  # fmt: skip
    return pk, insert_children(conn, pk, doc_pk, seg.children, now)


def with_children(conn: Conn, found: Sequence[Row]) -> list[Segment]:
    pks = [int(r[0]) for r in found]
    kids: dict[int, list[ChildChunk]] = {pk: [] for pk in pks}
    if pks:
        for r in conn.all(
            f"SELECT {CHILD_COLS} FROM child_chunks WHERE {conn.dialect.any_of('segment_pk')} "
            "ORDER BY segment_pk, position, id",
            (conn.dialect.seq(pks),),
        ):
            kids[int(r[2])].append(child_row(r))
    return [segment_row(r, tuple(kids[int(r[0])])) for r in found]


class DifySegmentRows:
    """Segments and child chunks of :class:`SqliteStore` and :class:`PostgresStore`."""

    db: Database

    def list_segments(
        self, document_pk: int, statuses: Sequence[str], keyword: str | None, limit: int, offset: int
    ) -> tuple[list[Segment], int]:
        with self.db.snapshot() as conn:
            where = "document_pk = ?"
            params: list[object] = [document_pk]
            if statuses:
                where += f" AND {conn.dialect.any_of('status')}"
                params.append(conn.dialect.seq(statuses))
            if keyword:
                where += f" AND {conn.dialect.position_fn}(lower(content), lower(?)) > 0"
                params.append(keyword)
            total = int(conn.scalar(f"SELECT count(*) FROM segments WHERE {where}", params))
            found = conn.all(
                f"SELECT {SEGMENT_COLS} FROM segments WHERE {where} ORDER BY position, id LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
            return with_children(conn, found), total

    def document_segments(self, document_pk: int) -> list[Segment]:
        with self.db.snapshot() as conn:
            found = conn.all(
                f"SELECT {SEGMENT_COLS} FROM segments WHERE document_pk = ? ORDER BY position, id", (document_pk,)
            )
            return with_children(conn, found)

    def segments_by_pk(self, segment_pks: Sequence[int]) -> dict[int, Segment]:
        with self.db.snapshot() as conn:
            found = conn.all(
                f"SELECT {SEGMENT_COLS} FROM segments WHERE {conn.dialect.any_of('id')}",
                (conn.dialect.seq(segment_pks),),
            )
            return {s.pk: s for s in with_children(conn, found)}

    def get_segment(self, document_pk: int, uuid: str) -> Segment | None:
        with self.db.snapshot() as conn:
            found = conn.all(
                f"SELECT {SEGMENT_COLS} FROM segments WHERE document_pk = ? AND uuid = ?", (document_pk, uuid)
            )
            segs = with_children(conn, found)
        return segs[0] if segs else None

    def add_segments(self, ds: DataSource, document_pk: int, segments: Sequence[SegmentWrite]) -> list[int]:
        now = rows.now_ms()
        with self.db.write() as conn:
            # the document's row lock orders concurrent additions (positions stay distinct)
            conn.execute(f"SELECT id FROM documents WHERE id = ?{conn.dialect.for_update}", (document_pk,))
            start = int(conn.scalar("SELECT coalesce(max(position), 0) FROM segments WHERE document_pk = ?",
                                    (document_pk,)))  # fmt: skip
            return [
                insert_segment(conn, ds.id, document_pk, start + i, seg, now)[0]
                for i, seg in enumerate(segments, start=1)
            ]

    def update_segment(
        self,
        segment_pk: int,
        *,
        content: SegmentWrite | None = None,
        enabled: bool | None = None,
        children: Sequence[ChildWrite] | None = None,
    ) -> None:
        now = rows.now_ms()
        with self.db.write() as conn:
            if content is not None:
                conn.execute(
                    "UPDATE segments SET content = ?, answer = ?, keywords = ?, hash = ?, word_count = ?, tokens = ?, "
                    "status = 'completed', updated_at = ?, completed_at = ? WHERE id = ?",
                    (content.content, content.answer, json.dumps(list(content.keywords)), content.hash,
                     content.word_count, content.tokens, now, now, segment_pk),
                )  # fmt: skip
            if enabled is not None:
                conn.execute(
                    "UPDATE segments SET enabled = ?, disabled_at = ?, updated_at = ? WHERE id = ?",
                    (bool(enabled), None if enabled else now, now, segment_pk),
                )
            if children is not None:
                doc_pk = int(missing_row(conn.one(
                    f"SELECT document_pk FROM segments WHERE id = ?{conn.dialect.for_update}", (segment_pk,)
                ))[0])  # fmt: skip
                conn.execute("DELETE FROM child_chunks WHERE segment_pk = ?", (segment_pk,))
                insert_children(conn, segment_pk, doc_pk, children, now)

    def delete_segment(self, segment_pk: int) -> bool:
        with self.db.write() as conn:
            return int(conn.execute("DELETE FROM segments WHERE id = ?", (segment_pk,)).rowcount) > 0

    def add_child_chunk(self, segment: Segment, content: str) -> ChildChunk:
        now = rows.now_ms()
        with self.db.write() as conn:
            # the segment's row lock orders concurrent additions (positions stay distinct)
            conn.execute(f"SELECT id FROM segments WHERE id = ?{conn.dialect.for_update}", (segment.pk,))
            row = conn.one(
                "INSERT INTO child_chunks (uuid, segment_pk, document_pk, position, content, word_count, type, "
                "created_at, updated_at) SELECT ?, ?, ?, coalesce(max(position), 0) + 1, ?, ?, 'customized', ?, ? "
                f"FROM child_chunks WHERE segment_pk = ? RETURNING {CHILD_COLS}",
                (rows.new_uuid(), segment.pk, segment.document_pk, content, len(content), now, now, segment.pk),
            )
        return child_row(missing_row(row))

    def update_child_chunk(self, child_pk: int, content: str) -> ChildChunk:
        with self.db.write() as conn:
            row = conn.one(
                "UPDATE child_chunks SET content = ?, word_count = ?, type = 'customized', updated_at = ? "
                f"WHERE id = ? RETURNING {CHILD_COLS}",
                (content, len(content), rows.now_ms(), child_pk),
            )
        return child_row(missing_row(row))

    def delete_child_chunk(self, child_pk: int) -> bool:
        with self.db.write() as conn:
            return int(conn.execute("DELETE FROM child_chunks WHERE id = ?", (child_pk,)).rowcount) > 0

    def bump_hit_counts(self, segment_pks: Sequence[int]) -> None:
        if not segment_pks:
            return
        with self.db.write() as conn:
            conn.execute(
                f"UPDATE segments SET hit_count = hit_count + 1 WHERE {conn.dialect.any_of('id')}",
                (conn.dialect.seq(segment_pks),),
            )

    def chunk_segments(self, chunk_pks: Sequence[int]) -> dict[int, tuple[int | None, int | None]]:
        """The segment and child chunk each chunk indexes (None, None for Dust chunks)."""
        with self.db.read() as conn:
            found = conn.all(
                f"SELECT id, segment_pk, child_pk FROM chunks WHERE {conn.dialect.any_of('id')}",
                (conn.dialect.seq(chunk_pks),),
            )
        return {int(r[0]): (opt_int(r[1]), opt_int(r[2])) for r in found}
