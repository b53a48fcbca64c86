"""The PostgreSQL store's core: workspaces, spaces, data sources, keys, documents and their chunks (rows, BM25
statistics, pgvector embeddings), and the shared row writers the other mixins use."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from alexandria.domain.models import ApiKey, DataSource, Document, Role, Space, SpaceKind, ViewKind, Workspace
from alexandria.errors import AlreadyExists, StorageError
from alexandria.ingest.base import Vectors
from alexandria.storage import rows
from alexandria.storage.base import ChunkWrite, DocumentWrite, StoredChunk
from alexandria.storage.chunk_index import checked_vectors as check_vectors
from alexandria.storage.postgres.chunk_index import delete_chunks, hnsw_index_name, insert_chunks
from alexandria.storage.postgres.db import PgEngine
from alexandria.storage.postgres.jobs import retire_queued

GLOBAL_GROUP_NAME = "Workspace"
SYSTEM_SPACE_NAME = "Connection Admin"
SPACE_COLS = (
    "id, sid, workspace_id, kind, name, created_at, updated_at, "
    "(SELECT coalesce(jsonb_agg(g.sid), '[]') FROM space_groups sg JOIN groups g ON g.id = sg.group_id "
    "WHERE sg.space_id = spaces.id), "
    "(SELECT count(*) FROM space_groups sg JOIN groups g ON g.id = sg.group_id "
    "WHERE sg.space_id = spaces.id AND g.kind = 'global')"
)
CHUNK_COLS = "id, document_pk, chunk_offset, text, hash"


def ensure_global_group(conn: psycopg.Connection, workspace_id: int) -> int:
    """The id of the workspace's global group (every key is a member), created if missing."""
    row = conn.execute(
        "INSERT INTO groups (sid, workspace_id, name, kind, created_at) VALUES (%s, %s, %s, 'global', %s) "
        "ON CONFLICT (workspace_id) WHERE kind = 'global' DO NOTHING RETURNING id",
        (rows.new_sid("grp"), workspace_id, GLOBAL_GROUP_NAME, rows.now_ms()),
    ).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT id FROM groups WHERE workspace_id = %s AND kind = 'global'", (workspace_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def insert_view(
    conn: psycopg.Connection,
    workspace_id: int,
    space_id: int,
    data_source_id: int,
    kind: ViewKind,
    parents_in: Sequence[str] | None,
) -> int:
    now = rows.now_ms()
    row = conn.execute(
        "INSERT INTO data_source_views (sid, workspace_id, space_id, data_source_id, kind, parents_in, created_at, "
        "updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            rows.new_sid("dsv"),
            workspace_id,
            space_id,
            data_source_id,
            kind.value,
            None if parents_in is None else json.dumps(list(parents_in)),
            now,
            now,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def next_position(conn: psycopg.Connection, data_source_id: int) -> int:
    row = conn.execute(
        "SELECT coalesce(max(position), 0) + 1 FROM documents WHERE data_source_id = %s", (data_source_id,)
    ).fetchone()
    return int(row[0]) if row else 1


def write_document_row(
    conn: psycopg.Connection,
    data_source_id: int,
    doc: DocumentWrite,
    now_ms: int,
    state: str,
    columns: Mapping[str, object] | None = None,
    new_uuid: str | None = None,
) -> tuple[int, bool]:
    """Insert or update a document's row and its tag and parent rows (see the SQLite twin,
    ``storage.sqlite.chunks.write_document_row``). Returns ``(pk, existed)``."""
    values: dict[str, object] = {
        "title": doc.title,
        "mime_type": doc.mime_type,
        "source_url": doc.source_url,
        "timestamp": doc.timestamp,
        "tags": json.dumps(list(doc.tags)),
        "parents": json.dumps(list(doc.parents)),
        "parent_id": doc.parent_id,
        "section": doc.section_json,
        "text": doc.text,
        "hash": doc.hash,
        "text_size": len(doc.text),
        "updated": now_ms,
        "index_state": state,
        "index_error": None,
        **(columns or {}),
    }
    old = conn.execute(
        "SELECT id FROM documents WHERE data_source_id = %s AND document_id = %s FOR UPDATE",
        (data_source_id, doc.document_id),
    ).fetchone()
    if old is not None:
        pk = int(old[0])
        conn.execute("DELETE FROM document_tags WHERE document_pk = %s", (pk,))
        conn.execute("DELETE FROM document_parents WHERE document_pk = %s", (pk,))
        assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in values)
        conn.execute(sql.SQL("UPDATE documents SET {} WHERE id = %s").format(assignments), (*values.values(), pk))
    else:
        values = {**values, "created": now_ms, "data_source_id": data_source_id, "document_id": doc.document_id,
                  "uuid": new_uuid or str(uuid.uuid4()), "position": next_position(conn, data_source_id)}  # fmt: skip
        names = sql.SQL(", ").join(sql.Identifier(k) for k in values)
        marks = sql.SQL(", ").join(sql.Placeholder() for _ in values)
        row = conn.execute(
            sql.SQL("INSERT INTO documents ({}) VALUES ({}) RETURNING id").format(names, marks), tuple(values.values())
        ).fetchone()
        assert row is not None
        pk = int(row[0])
    if doc.tags:
        conn.execute(
            "INSERT INTO document_tags (tag, document_pk) SELECT DISTINCT t, %s FROM unnest(%s::text[]) t "
            "ON CONFLICT DO NOTHING",
            (pk, list(doc.tags)),
        )
    if doc.parents:
        conn.execute(
            "INSERT INTO document_parents (parent, document_pk) SELECT DISTINCT p, %s FROM unnest(%s::text[]) p "
            "ON CONFLICT DO NOTHING",
            (pk, list(doc.parents)),
        )
    return pk, old is not None


def forget_segments(conn: psycopg.Connection, document_pk: int) -> None:
    """A document rewritten through Dust: its Dify segments and processing record no longer describe it."""
    conn.execute("DELETE FROM segments WHERE document_pk = %s", (document_pk,))
    conn.execute("UPDATE documents SET dify = NULL WHERE id = %s", (document_pk,))


def drop_files_of(conn: psycopg.Connection, where: str, params: Sequence[object]) -> int:
    """Delete the uploaded files of the documents matching ``where`` (about to be deleted or replaced)."""
    cur = conn.execute(
        "DELETE FROM files WHERE uuid IN (SELECT dify->'file'->>'id' FROM documents WHERE dify IS NOT NULL "
        f"AND coalesce((dify->>'stored_file')::boolean, false) AND {where})",
        tuple(params),
    )
    return int(cur.rowcount)


class PgCore:
    """Catalog, keys, documents and chunks of :class:`PostgresStore`."""

    engine: PgEngine
    hnsw_m: int
    hnsw_ef_construction: int

    # --- catalog -------------------------------------------------------------------------------------------------
    def create_workspace(self, sid: str, name: str) -> Workspace:
        try:
            with self.engine.write() as conn:
                row = conn.execute(
                    "INSERT INTO workspaces (sid, name, created_at) VALUES (%s, %s, %s) "
                    f"RETURNING {rows.WORKSPACE_COLS}",
                    (sid, name, rows.now_ms()),
                ).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            raise AlreadyExists(f"workspace {sid!r} already exists", code="workspace_exists") from exc
        assert row is not None
        return rows.workspace(row)

    def get_workspace(self, sid: str) -> Workspace | None:
        with self.engine.read() as conn:
            row = conn.execute(f"SELECT {rows.WORKSPACE_COLS} FROM workspaces WHERE sid = %s", (sid,)).fetchone()
        return rows.workspace(row) if row else None

    def get_workspace_by_id(self, workspace_id: int) -> Workspace | None:
        with self.engine.read() as conn:
            row = conn.execute(
                f"SELECT {rows.WORKSPACE_COLS} FROM workspaces WHERE id = %s", (workspace_id,)
            ).fetchone()
        return rows.workspace(row) if row else None

    def _ensure_space(self, workspace: Workspace, kind: SpaceKind, name: str, with_global_group: bool) -> Space:
        with self.engine.write() as conn:
            now = rows.now_ms()
            row = conn.execute(
                "INSERT INTO spaces (sid, workspace_id, kind, name, created_at, updated_at) "
                f"VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (workspace_id) WHERE kind = '{kind.value}' DO NOTHING "
                "RETURNING id",
                (rows.new_sid("vlt"), workspace.id, kind.value, name, now, now),
            ).fetchone()
            if row is not None and with_global_group:
                conn.execute(
                    "INSERT INTO space_groups (space_id, group_id) VALUES (%s, %s)",
                    (row[0], ensure_global_group(conn, workspace.id)),
                )
            found = conn.execute(
                f"SELECT {SPACE_COLS} FROM spaces WHERE workspace_id = %s AND kind = %s", (workspace.id, kind.value)
            ).fetchone()
        assert found is not None
        return rows.space(found)

    def ensure_global_space(self, workspace: Workspace) -> Space:
        return self._ensure_space(workspace, SpaceKind.GLOBAL, "Company Data", with_global_group=True)

    def ensure_system_space(self, workspace: Workspace) -> Space:
        return self._ensure_space(workspace, SpaceKind.SYSTEM, SYSTEM_SPACE_NAME, with_global_group=False)

    def _space_where(self, where: str, params: Sequence[object]) -> list[Space]:
        with self.engine.read() as conn:
            found = conn.execute(f"SELECT {SPACE_COLS} FROM spaces WHERE {where} ORDER BY id", tuple(params)).fetchall()
        return [rows.space(r) for r in found]

    def global_space(self, workspace_id: int) -> Space | None:
        found = self._space_where("workspace_id = %s AND kind = 'global'", (workspace_id,))
        return found[0] if found else None

    def list_spaces(self, workspace_id: int) -> list[Space]:
        return self._space_where("workspace_id = %s", (workspace_id,))

    def get_space(self, workspace_id: int, sid: str) -> Space | None:
        found = self._space_where("workspace_id = %s AND sid = %s", (workspace_id, sid))
        return found[0] if found else None

    def get_space_by_id(self, space_id: int) -> Space | None:
        found = self._space_where("id = %s", (space_id,))
        return found[0] if found else None

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
        now = rows.now_ms()
        try:
            with self.engine.write() as conn:
                row = conn.execute(
                    "INSERT INTO data_sources (sid, core_id, workspace_id, space_id, name, description, embedder, dim, "
                    "chunk_size, created_at, connector_provider, uuid, dify, updated_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    f"RETURNING {rows.DATA_SOURCE_COLS}",
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
                        now,
                        connector_provider,
                        rows.new_uuid(),
                        json.dumps(dict(dify or {})),
                        now,
                    ),
                ).fetchone()
                assert row is not None
                ds = rows.data_source(row)
                insert_view(conn, workspace_id, space_id, ds.id, ViewKind.DEFAULT, None)
                # the data source's ANN index: HNSW over its chunks' embeddings (half precision), a partial index
                conn.execute(
                    sql.SQL(
                        "CREATE INDEX {} ON chunks USING hnsw ((embedding::halfvec({})) halfvec_cosine_ops) "
                        "WITH (m = {}, ef_construction = {}) WHERE data_source_id = {}"
                    ).format(
                        sql.Identifier(hnsw_index_name(ds.id)),
                        sql.Literal(int(dim)),
                        sql.Literal(int(self.hnsw_m)),
                        sql.Literal(int(self.hnsw_ef_construction)),
                        sql.Literal(int(ds.id)),
                    )
                )
        except psycopg.errors.UniqueViolation as exc:
            raise AlreadyExists(
                f"a data source named {name!r} already exists in this workspace", code="data_source_name_taken"
            ) from exc
        return ds

    def _data_sources(self, where: str, params: Sequence[object], order: str = "id") -> list[DataSource]:
        with self.engine.read() as conn:
            found = conn.execute(
                f"SELECT {rows.DATA_SOURCE_COLS} FROM data_sources WHERE {where} ORDER BY {order}", tuple(params)
            ).fetchall()
        return [rows.data_source(r) for r in found]

    def list_data_sources(self, workspace_id: int, space_id: int | None) -> list[DataSource]:
        if space_id is None:
            return self._data_sources("workspace_id = %s", (workspace_id,))
        return self._data_sources("workspace_id = %s AND space_id = %s", (workspace_id, space_id))

    def get_data_source(self, workspace_id: int, sid_or_name: str) -> DataSource | None:
        found = self._data_sources(
            "workspace_id = %s AND (sid = %s OR name = %s)",
            (workspace_id, sid_or_name, sid_or_name, sid_or_name),
            order="(sid = %s) DESC LIMIT 1",
        )
        return found[0] if found else None

    def get_data_source_by_id(self, data_source_id: int) -> DataSource | None:
        found = self._data_sources("id = %s", (data_source_id,))
        return found[0] if found else None

    # --- keys ----------------------------------------------------------------------------------------------------
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
            row = conn.execute(
                "INSERT INTO api_keys (workspace_id, name, role, key_hash, prefix, created_at, data_source_id) "
                f"VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {rows.API_KEY_COLS}",
                (workspace_id, name, role.value, key_hash, prefix, rows.now_ms(), data_source_id),
            ).fetchone()
        assert row is not None
        return rows.api_key(row)

    def get_api_key(self, key_hash: str) -> ApiKey | None:
        with self.engine.read() as conn:
            row = conn.execute(f"SELECT {rows.API_KEY_COLS} FROM api_keys WHERE key_hash = %s", (key_hash,)).fetchone()
        return rows.api_key(row) if row else None

    # --- documents -----------------------------------------------------------------------------------------------
    def _documents(self, where: str, params: Sequence[object], with_text: bool, tail: str = "") -> list[Document]:
        cols = rows.DOCUMENT_COLS + (", text" if with_text else "")
        with self.engine.read() as conn:
            found = conn.execute(f"SELECT {cols} FROM documents WHERE {where} {tail}", tuple(params)).fetchall()
        return [rows.document(r, text=str(r[rows.DOCUMENT_TEXT_AT]) if with_text else None) for r in found]

    def get_document(self, ds: DataSource, document_id: str, with_text: bool) -> Document | None:
        found = self._documents("data_source_id = %s AND document_id = %s", (ds.id, document_id), with_text)
        return found[0] if found else None

    def list_documents(
        self, ds: DataSource, document_ids: Sequence[str] | None, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        with self.engine.snapshot() as conn:
            row = conn.execute("SELECT count(*) FROM documents WHERE data_source_id = %s", (ds.id,)).fetchone()
            where = "data_source_id = %s"
            params: list[object] = [ds.id]
            if document_ids is not None:
                where += " AND document_id = ANY(%s)"
                params.append(list(document_ids))
            found = conn.execute(
                f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE {where} ORDER BY timestamp DESC, id DESC "
                "LIMIT %s OFFSET %s",
                (*params, limit, offset),
            ).fetchall()
        return [rows.document(r) for r in found], int(row[0]) if row else 0

    def document_hash(self, ds: DataSource, document_id: str) -> str | None:
        with self.engine.read() as conn:
            row = conn.execute(
                "SELECT hash FROM documents WHERE data_source_id = %s AND document_id = %s AND index_state = 'indexed'",
                (ds.id, document_id),
            ).fetchone()
        return str(row[0]) if row else None

    def vectors_by_chunk_hash(self, ds: DataSource, document_id: str) -> dict[str, Vectors]:
        with self.engine.read() as conn:
            found = conn.execute(
                "SELECT c.hash, c.embedding FROM chunks c JOIN documents d ON d.id = c.document_pk "
                "WHERE d.data_source_id = %s AND d.document_id = %s",
                (ds.id, document_id),
            ).fetchall()
        return {str(h): np.asarray(v.to_numpy(), dtype=np.float32) for h, v in found}  # pgvector loads a Vector

    def upsert_document(
        self, ds: DataSource, doc: DocumentWrite, chunks: Sequence[ChunkWrite], vectors: Vectors
    ) -> Document:
        vecs = check_vectors(ds, chunks, vectors)
        with self.engine.write() as conn:
            now = rows.now_ms()
            counts = {"chunk_count": len(chunks), "token_count": doc.token_count}
            pk, existed = write_document_row(conn, ds.id, doc, now, "indexed", counts)
            if existed:
                delete_chunks(conn, ds.id, "document_pk = %s", (pk,))
                retire_queued(conn, ds.id, doc.document_id, now)
                forget_segments(conn, pk)
            insert_chunks(conn, ds.id, pk, chunks, vecs)
            row = conn.execute(f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE id = %s", (pk,)).fetchone()
        assert row is not None
        return rows.document(row)

    def delete_document(self, ds: DataSource, document_id: str) -> bool:
        with self.engine.write() as conn:
            row = conn.execute(
                "SELECT id FROM documents WHERE data_source_id = %s AND document_id = %s FOR UPDATE",
                (ds.id, document_id),
            ).fetchone()
            if row is None:
                return False
            pk = int(row[0])
            delete_chunks(conn, ds.id, "document_pk = %s", (pk,))
            drop_files_of(conn, "id = %s", (pk,))
            conn.execute("DELETE FROM documents WHERE id = %s", (pk,))
            retire_queued(conn, ds.id, document_id, rows.now_ms())
        return True

    def update_parents(self, ds: DataSource, document_id: str, parents: Sequence[str], parent_id: str | None) -> bool:
        with self.engine.write() as conn:
            row = conn.execute(
                "UPDATE documents SET parents = %s, parent_id = %s, updated = %s "
                "WHERE data_source_id = %s AND document_id = %s RETURNING id",
                (json.dumps(list(parents)), parent_id, rows.now_ms(), ds.id, document_id),
            ).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM document_parents WHERE document_pk = %s", (row[0],))
            conn.execute(
                "INSERT INTO document_parents (parent, document_pk) SELECT DISTINCT p, %s FROM unnest(%s::text[]) p",
                (row[0], list(parents)),
            )
        return True

    # --- loading -------------------------------------------------------------------------------------------------
    def _chunks(self, where: str, params: Sequence[object], order: str = "") -> list[StoredChunk]:
        with self.engine.read() as conn:
            found = conn.execute(f"SELECT {CHUNK_COLS} FROM chunks WHERE {where} {order}", tuple(params)).fetchall()
        return [StoredChunk(int(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4])) for r in found]

    def load_chunks(self, chunk_pks: Sequence[int]) -> dict[int, StoredChunk]:
        if not chunk_pks:
            return {}
        return {c.pk: c for c in self._chunks("id = ANY(%s)", (list(chunk_pks),))}

    def chunks_of_documents(self, document_pks: Sequence[int]) -> list[StoredChunk]:
        return self._chunks("document_pk = ANY(%s)", (list(document_pks),), "ORDER BY document_pk, chunk_offset")

    def chunks_at_offsets(self, document_pk: int, offsets: Sequence[int]) -> dict[int, StoredChunk]:
        found = self._chunks("document_pk = %s AND chunk_offset = ANY(%s)", (document_pk, list(offsets)))
        return {c.offset: c for c in found}

    def documents_by_pk(self, pks: Sequence[int], with_text: bool) -> dict[int, Document]:
        return {d.pk: d for d in self._documents("id = ANY(%s)", (list(pks),), with_text)}

    def close(self) -> None:
        self.engine.close()


def storage_error(exc: Exception) -> StorageError:
    return StorageError(f"PostgreSQL error: {exc}")
