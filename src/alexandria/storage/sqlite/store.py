"""The embedded store: SQLite (WAL, FTS5 BM25 per data source) plus a usearch HNSW cache per data source."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alexandria.config import Settings
from alexandria.domain.models import ApiKey, DataSource, Document, Role, Space, SpaceKind, ViewKind, Workspace
from alexandria.errors import AlreadyExists, InvalidRequest, StorageError
from alexandria.ingest.base import Vectors
from alexandria.storage import rows
from alexandria.storage.base import ChunkWrite, DocumentWrite, StoredChunk
from alexandria.storage.common.dify_catalog import DifyCatalogRows
from alexandria.storage.common.dify_documents import DifyDocumentRows
from alexandria.storage.common.dify_segments import DifySegmentRows
from alexandria.storage.database import Database
from alexandria.storage.sqlite.chunk_index import SqliteChunkIndex
from alexandria.storage.sqlite.chunks import drop_files_of, forget_segments, insert_chunks, write_document_row
from alexandria.storage.sqlite.db import SqliteEngine, quote_ident
from alexandria.storage.sqlite.jobs import SqliteJobs, retire_queued
from alexandria.storage.sqlite.search import SqliteSearch
from alexandria.storage.sqlite.spaces import SqliteSpaces, ensure_global_group, insert_view
from alexandria.storage.sqlite.tables import SqliteTables
from alexandria.storage.sqlite.transfer import SqliteTransfer
from alexandria.storage.sqlite.vectors import HnswParams, VectorIndexes, vectors_from_blobs


def fts_table(data_source_id: int) -> str:
    return quote_ident(f"fts_{int(data_source_id)}")


def open_sqlite_store(url: str, settings: Settings) -> SqliteStore:
    if not url.startswith("sqlite:///"):
        raise InvalidRequest(f"SQLite URLs look like sqlite:///relative/path or sqlite:////absolute/path, not {url}")
    return SqliteStore(Path(url[len("sqlite:///") :]), settings)


class SqliteStore(
    SqliteSpaces,
    SqliteSearch,
    SqliteJobs,
    SqliteTables,
    DifyCatalogRows,
    DifyDocumentRows,
    DifySegmentRows,
    SqliteTransfer,
):
    def __init__(self, path: Path, settings: Settings) -> None:
        self.engine = SqliteEngine(path)
        self.vectors = VectorIndexes(
            path.parent / "vectors",
            HnswParams(settings.hnsw_connectivity, settings.hnsw_expansion_add, settings.hnsw_expansion_search),
        )
        self.exact_max = settings.exact_search_max_candidates
        self.db = Database(self.engine)
        self.index = SqliteChunkIndex(self.db, self.vectors)

    def close(self) -> None:
        self.vectors.save_all()
        self.engine.close()

    # --- catalog -------------------------------------------------------------------------------------------------
    def create_workspace(self, sid: str, name: str) -> Workspace:
        try:
            with self.engine.write() as conn:
                cur = conn.execute(
                    "INSERT INTO workspaces (sid, name, created_at) VALUES (?, ?, ?)", (sid, name, rows.now_ms())
                )
                row = conn.execute(
                    f"SELECT {rows.WORKSPACE_COLS} FROM workspaces WHERE id = ?", (cur.lastrowid,)
                ).fetchone()
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"workspace {sid!r} already exists", code="workspace_exists") from exc
        return rows.workspace(row)

    def get_workspace(self, sid: str) -> Workspace | None:
        row = (
            self.engine.reader()
            .execute(f"SELECT {rows.WORKSPACE_COLS} FROM workspaces WHERE sid = ?", (sid,))
            .fetchone()
        )
        return rows.workspace(row) if row else None

    def get_workspace_by_id(self, workspace_id: int) -> Workspace | None:
        row = (
            self.engine.reader()
            .execute(f"SELECT {rows.WORKSPACE_COLS} FROM workspaces WHERE id = ?", (workspace_id,))
            .fetchone()
        )
        return rows.workspace(row) if row else None

    def ensure_global_space(self, workspace: Workspace) -> Space:
        with self.engine.write() as conn:
            row = conn.execute(
                f"SELECT {rows.SPACE_COLS} FROM spaces WHERE workspace_id = ? AND kind = 'global'", (workspace.id,)
            ).fetchone()
            if row is None:
                now = rows.now_ms()
                cur = conn.execute(
                    "INSERT INTO spaces (sid, workspace_id, kind, name, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (rows.new_sid("vlt"), workspace.id, SpaceKind.GLOBAL.value, "Company Data", now, now),
                )
                conn.execute(
                    "INSERT INTO space_groups (space_id, group_id) VALUES (?, ?)",
                    (cur.lastrowid, ensure_global_group(conn, workspace.id)),
                )
                row = conn.execute(f"SELECT {rows.SPACE_COLS} FROM spaces WHERE id = ?", (cur.lastrowid,)).fetchone()
        return rows.space(row)

    def global_space(self, workspace_id: int) -> Space | None:
        row = (
            self.engine.reader()
            .execute(
                f"SELECT {rows.SPACE_COLS} FROM spaces WHERE workspace_id = ? AND kind = 'global'", (workspace_id,)
            )
            .fetchone()
        )
        return rows.space(row) if row else None

    def list_spaces(self, workspace_id: int) -> list[Space]:
        cur = self.engine.reader().execute(
            f"SELECT {rows.SPACE_COLS} FROM spaces WHERE workspace_id = ? ORDER BY id", (workspace_id,)
        )
        return [rows.space(r) for r in cur]

    def get_space(self, workspace_id: int, sid: str) -> Space | None:
        row = (
            self.engine.reader()
            .execute(f"SELECT {rows.SPACE_COLS} FROM spaces WHERE workspace_id = ? AND sid = ?", (workspace_id, sid))
            .fetchone()
        )
        return rows.space(row) if row else None

    def get_space_by_id(self, space_id: int) -> Space | None:
        row = self.engine.reader().execute(f"SELECT {rows.SPACE_COLS} FROM spaces WHERE id = ?", (space_id,)).fetchone()
        return rows.space(row) if row else None

    def create_data_source(
        self,
        workspace_id: int,
        space_id: int,
        name: str,
        description: str | None,
        embedder: str,
        dim: int,
        chunk_size: int,
        connector_provider: str | None = None,
        dify: Mapping[str, Any] | None = None,
    ) -> DataSource:
        try:
            with self.engine.write() as conn:
                cur = conn.execute(
                    "INSERT INTO data_sources (sid, core_id, workspace_id, space_id, name, description, embedder, "
                    "dim, chunk_size, created_at, connector_provider, uuid, dify, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        rows.new_sid("dts"),
                        np.random.default_rng().bytes(32).hex(),
                        workspace_id,
                        space_id,
                        name,
                        description,
                        embedder,
                        dim,
                        chunk_size,
                        rows.now_ms(),
                        connector_provider,
                        rows.new_uuid(),
                        json.dumps(dict(dify or {})),
                        rows.now_ms(),
                    ),
                )
                ds_id = int(cur.lastrowid or 0)
                insert_view(conn, workspace_id, space_id, ds_id, ViewKind.DEFAULT, None)
                conn.execute(
                    f"CREATE VIRTUAL TABLE {fts_table(ds_id)} USING fts5(text, content='chunks', "
                    "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')"
                )
                row = conn.execute(
                    f"SELECT {rows.DATA_SOURCE_COLS} FROM data_sources WHERE id = ?", (ds_id,)
                ).fetchone()
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(
                f"a data source named {name!r} already exists in this workspace", code="data_source_name_taken"
            ) from exc
        return rows.data_source(row)

    def list_data_sources(self, workspace_id: int, space_id: int | None) -> list[DataSource]:
        sql = f"SELECT {rows.DATA_SOURCE_COLS} FROM data_sources WHERE workspace_id = ?"
        params: list[object] = [workspace_id]
        if space_id is not None:
            sql += " AND space_id = ?"
            params.append(space_id)
        return [rows.data_source(r) for r in self.engine.reader().execute(sql + " ORDER BY id", params)]

    def get_data_source(self, workspace_id: int, sid_or_name: str) -> DataSource | None:
        row = (
            self.engine.reader()
            .execute(
                f"SELECT {rows.DATA_SOURCE_COLS} FROM data_sources WHERE workspace_id = ? AND (sid = ? OR name = ?) "
                "ORDER BY sid = ? DESC LIMIT 1",
                (workspace_id, sid_or_name, sid_or_name, sid_or_name),
            )
            .fetchone()
        )
        return rows.data_source(row) if row else None

    def create_api_key(
        self,
        workspace_id: int,
        name: str,
        role: Role,
        key_hash: str,
        prefix: str,
        data_source_id: int | None = None,
    ) -> ApiKey:
        with self.engine.write() as conn:
            cur = conn.execute(
                "INSERT INTO api_keys (workspace_id, name, role, key_hash, prefix, created_at, data_source_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (workspace_id, name, role.value, key_hash, prefix, rows.now_ms(), data_source_id),
            )
            row = conn.execute(f"SELECT {rows.API_KEY_COLS} FROM api_keys WHERE id = ?", (cur.lastrowid,)).fetchone()
        return rows.api_key(row)

    def get_api_key(self, key_hash: str) -> ApiKey | None:
        row = (
            self.engine.reader()
            .execute(f"SELECT {rows.API_KEY_COLS} FROM api_keys WHERE key_hash = ?", (key_hash,))
            .fetchone()
        )
        return rows.api_key(row) if row else None

    # --- documents -----------------------------------------------------------------------------------------------
    def get_document(self, ds: DataSource, document_id: str, with_text: bool) -> Document | None:
        cols = rows.DOCUMENT_COLS + (", text" if with_text else "")
        row = (
            self.engine.reader()
            .execute(f"SELECT {cols} FROM documents WHERE data_source_id = ? AND document_id = ?", (ds.id, document_id))
            .fetchone()
        )
        if row is None:
            return None
        return rows.document(row, text=str(row[rows.DOCUMENT_TEXT_AT]) if with_text else None)

    def list_documents(
        self, ds: DataSource, document_ids: Sequence[str] | None, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        with self.engine.snapshot() as conn:
            total = int(conn.execute("SELECT count(*) FROM documents WHERE data_source_id = ?", (ds.id,)).fetchone()[0])
            sql = f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE data_source_id = ?"
            params: list[object] = [ds.id]
            if document_ids is not None:
                sql += " AND document_id IN (SELECT value FROM json_each(?))"
                params.append(json.dumps(list(document_ids)))
            sql += " ORDER BY timestamp DESC, id DESC LIMIT ? OFFSET ?"
            params += [limit, offset]
            docs = [rows.document(r) for r in conn.execute(sql, params)]
        return docs, total

    def document_hash(self, ds: DataSource, document_id: str) -> str | None:
        """The hash of the document's content if that content is indexed (None if missing, pending or failed)."""
        row = (
            self.engine.reader()
            .execute(
                "SELECT hash FROM documents WHERE data_source_id = ? AND document_id = ? AND index_state = 'indexed'",
                (ds.id, document_id),
            )
            .fetchone()
        )
        return str(row[0]) if row else None

    def vectors_by_chunk_hash(self, ds: DataSource, document_id: str) -> dict[str, Vectors]:
        cur = self.engine.reader().execute(
            "SELECT c.hash, c.vector FROM chunks c JOIN documents d ON d.id = c.document_pk "
            "WHERE d.data_source_id = ? AND d.document_id = ?",
            (ds.id, document_id),
        )
        return {str(h): np.frombuffer(v, dtype=np.float32) for h, v in cur}

    def upsert_document(
        self, ds: DataSource, doc: DocumentWrite, chunks: Sequence[ChunkWrite], vectors: Vectors
    ) -> Document:
        if len(chunks) != len(vectors):
            raise InvalidRequest("chunks and vectors differ in length")
        if len(chunks) and vectors.shape[1] != ds.dim:
            raise InvalidRequest(f"vectors have dimension {vectors.shape[1]}, data source expects {ds.dim}")
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        index = self.vectors.get(ds.id, ds.dim)
        fts = fts_table(ds.id)
        with index.lock:
            with self.engine.write() as conn:
                prev_version = self._vector_version(conn, ds.id)
                now = rows.now_ms()
                counts = {"chunk_count": len(chunks), "token_count": doc.token_count}
                pk, existed = write_document_row(conn, ds.id, doc, now, "indexed", counts)
                removed: list[int] = []
                if existed:
                    removed = self._delete_chunks(conn, fts, pk)
                    retire_queued(conn, ds.id, doc.document_id, now)  # older async versions are obsolete
                    forget_segments(conn, pk)  # Dust's chunker now owns the document
                added = insert_chunks(conn, fts, ds.id, pk, chunks, vecs)
                new_version = self._bump_version(conn, ds.id)
                row = conn.execute(f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE id = ?", (pk,)).fetchone()
            # committed: mirror the change in the ANN cache if it was in step with the database
            if index.version == prev_version:
                index.remove(np.array(removed, dtype=np.int64))
                index.add(np.array(added, dtype=np.int64), vecs)
                index.version = new_version
        return rows.document(row)

    def delete_document(self, ds: DataSource, document_id: str) -> bool:
        index = self.vectors.get(ds.id, ds.dim)
        with index.lock:
            with self.engine.write() as conn:
                row = conn.execute(
                    "SELECT id FROM documents WHERE data_source_id = ? AND document_id = ?", (ds.id, document_id)
                ).fetchone()
                if row is None:
                    return False
                prev_version = self._vector_version(conn, ds.id)
                removed = self._delete_chunks(conn, fts_table(ds.id), int(row[0]))
                drop_files_of(conn, "id = ?", (int(row[0]),))
                conn.execute("DELETE FROM documents WHERE id = ?", (int(row[0]),))
                retire_queued(conn, ds.id, document_id, rows.now_ms())
                new_version = self._bump_version(conn, ds.id)
            if index.version == prev_version:
                index.remove(np.array(removed, dtype=np.int64))
                index.version = new_version
        return True

    def update_parents(self, ds: DataSource, document_id: str, parents: Sequence[str], parent_id: str | None) -> bool:
        with self.engine.write() as conn:
            row = conn.execute(
                "SELECT id FROM documents WHERE data_source_id = ? AND document_id = ?", (ds.id, document_id)
            ).fetchone()
            if row is None:
                return False
            pk = int(row[0])
            conn.execute(
                "UPDATE documents SET parents = ?, parent_id = ?, updated = ? WHERE id = ?",
                (json.dumps(list(parents)), parent_id, rows.now_ms(), pk),
            )
            conn.execute("DELETE FROM document_parents WHERE document_pk = ?", (pk,))
            conn.executemany(
                "INSERT OR IGNORE INTO document_parents (parent, document_pk) VALUES (?, ?)",
                [(p, pk) for p in parents],
            )
        return True

    @staticmethod
    def _delete_chunks(conn: sqlite3.Connection, fts: str, document_pk: int) -> list[int]:
        old = conn.execute("SELECT id, text FROM chunks WHERE document_pk = ?", (document_pk,)).fetchall()
        conn.executemany(f"INSERT INTO {fts} ({fts}, rowid, text) VALUES ('delete', ?, ?)", [(r[0], r[1]) for r in old])
        conn.execute("DELETE FROM chunks WHERE document_pk = ?", (document_pk,))
        return [int(r[0]) for r in old]

    @staticmethod
    def _vector_version(conn: sqlite3.Connection, data_source_id: int) -> int:
        row = conn.execute("SELECT vector_version FROM data_sources WHERE id = ?", (data_source_id,)).fetchone()
        if row is None:
            raise StorageError(f"data source {data_source_id} vanished")
        return int(row[0])

    @staticmethod
    def _bump_version(conn: sqlite3.Connection, data_source_id: int) -> int:
        conn.execute("UPDATE data_sources SET vector_version = vector_version + 1 WHERE id = ?", (data_source_id,))
        return SqliteStore._vector_version(conn, data_source_id)

    # --- loading -------------------------------------------------------------------------------------------------
    def load_chunks(self, chunk_pks: Sequence[int]) -> dict[int, StoredChunk]:
        if not chunk_pks:
            return {}
        cur = self.engine.reader().execute(
            "SELECT id, document_pk, chunk_offset, text, hash FROM chunks WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(chunk_pks)),),
        )
        return {int(r[0]): StoredChunk(int(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4])) for r in cur}

    def chunks_of_documents(self, document_pks: Sequence[int]) -> list[StoredChunk]:
        cur = self.engine.reader().execute(
            "SELECT id, document_pk, chunk_offset, text, hash FROM chunks WHERE document_pk IN "
            "(SELECT value FROM json_each(?)) ORDER BY document_pk, chunk_offset",
            (json.dumps(list(document_pks)),),
        )
        return [StoredChunk(int(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4])) for r in cur]

    def chunks_at_offsets(self, document_pk: int, offsets: Sequence[int]) -> dict[int, StoredChunk]:
        cur = self.engine.reader().execute(
            "SELECT id, document_pk, chunk_offset, text, hash FROM chunks WHERE document_pk = ? AND chunk_offset IN "
            "(SELECT value FROM json_each(?))",
            (document_pk, json.dumps(list(offsets))),
        )
        return {int(r[2]): StoredChunk(int(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4])) for r in cur}

    def documents_by_pk(self, pks: Sequence[int], with_text: bool) -> dict[int, Document]:
        cols = rows.DOCUMENT_COLS + (", text" if with_text else "")
        cur = self.engine.reader().execute(
            f"SELECT {cols} FROM documents WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(list(pks)),)
        )
        return {int(r[0]): rows.document(r, text=str(r[rows.DOCUMENT_TEXT_AT]) if with_text else None) for r in cur}

    def chunk_vectors(self, chunk_pks: Sequence[int], dim: int) -> tuple[list[int], Vectors]:
        cur = self.engine.reader().execute(
            "SELECT id, vector FROM chunks WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(chunk_pks)),),
        )
        got = cur.fetchall()
        return [int(r[0]) for r in got], vectors_from_blobs([r[1] for r in got], dim)
