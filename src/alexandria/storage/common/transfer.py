"""A workspace entering a store (``alexandria import``), written once over the facade: every row with the ids the
target assigns, natural keys rewritten to them; chunks through the engine's :class:`ChunkLoad` (keyword structures,
vectors, and each data source's ANN index, built once over the loaded rows). The queue's live jobs move as queued
(a running job's lease belongs to a worker of the source store; attempts are kept), and a document still in the
pipeline without one gets an index job. The rows are ``storage/common/transfer_rows.py``'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from alexandria.domain.jobs import Job, index_kind
from alexandria.domain.models import DataSource, Workspace
from alexandria.errors import AlreadyExists, InvalidRequest, StorageError
from alexandria.ingest.base import Vectors
from alexandria.storage.base import ChunkWrite
from alexandria.storage.chunk_index import ChunkIndex, ChunkLoad
from alexandria.storage.common.catalog import data_sources_where
from alexandria.storage.common.transfer_rows import DEPENDENTS, TABLES, Row, export_rows
from alexandria.storage.database import Database, DuplicateKey
from alexandria.storage.rows import now_ms


def _insert_sql(table: str, columns: Iterable[str], returning: bool = True) -> str:
    cols = list(columns)  # this module's column names, never input
    marks = ", ".join("?" for _ in cols)
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})" + (" RETURNING id" if returning else "")


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


@dataclass
class _Document:
    uuid: str
    pk: int
    ds: DataSource
    segments: dict[str, int]
    children: dict[str, int]
    chunks: list[ChunkWrite]
    vectors: list[Vectors]


class WorkspaceImporter:
    """Writes an export's rows in a :class:`ChunkLoad`'s transaction, mapping natural keys to the ids the target
    assigns. Rows must come in file order (a row's parents before it)."""

    def __init__(self, load: ChunkLoad, now_ms: int) -> None:
        self.load = load
        self.conn = load.conn
        self.now_ms = now_ms
        self.workspace: Workspace | None = None
        self.spaces: dict[str, int] = {}
        self.groups: dict[str, int] = {}
        self.data_sources: dict[str, DataSource] = {}  # by sId
        self.keys: dict[str, int] = {}
        self.tags: dict[str, int] = {}
        self.tables: dict[tuple[str, str], int] = {}
        self.doc: _Document | None = None
        # (data source id, document id) -> (hash, index job kind) of the documents not yet indexed
        self.waiting: dict[tuple[int, str], tuple[str, str]] = {}
        self.queued: set[tuple[int, str]] = set()  # (data source id, subject) of the imported live jobs
        self.counts: dict[str, int] = {}
        self.link_sql = ""
        self.links: list[tuple[object, ...]] = []
        self.table = ""

    # helpers
    @property
    def ws_id(self) -> int:
        if self.workspace is None:
            raise InvalidRequest("malformed export: rows before the workspace row")
        return self.workspace.id

    @staticmethod
    def _ref(mapping: Mapping[str, int], key: object, what: str) -> int:
        found = mapping.get(str(key))
        if found is None:
            raise InvalidRequest(f"malformed export: unknown {what} {key!r}")
        return found

    def _ds(self, sid: object) -> int:
        found = self.data_sources.get(str(sid))
        if found is None:
            raise InvalidRequest(f"malformed export: unknown data source {sid!r}")
        return found.id

    def _opt_ds(self, sid: object) -> int | None:
        return None if sid is None else self._ds(sid)

    def _insert(self, table: str, values: Mapping[str, object]) -> int:
        return self.conn.returning_id(_insert_sql(table, values), tuple(values.values()))

    def _link(self, table: str, values: Mapping[str, object]) -> None:
        """Queue a row that nothing refers to (link tables, table rows): written in batches."""
        sql = _insert_sql(table, values, returning=False)
        if sql != self.link_sql or len(self.links) >= 1000:
            self._flush_links()
            self.link_sql = sql
        self.links.append(tuple(values.values()))

    def _flush_links(self) -> None:
        if self.links:
            self.conn.executemany(self.link_sql, self.links)
        self.links = []

    # rows
    def add(self, table: str, row: Row) -> None:
        handler = getattr(self, f"_add_{table}", None) if table in TABLES else None
        if handler is None:
            raise InvalidRequest(f"malformed export: unknown table {table!r}")
        if table != self.table:  # a table's queued rows go before the next table's (which may refer to them)
            self._flush_links()
            self.table = table
        if table not in DEPENDENTS:
            self._flush()
        try:
            handler(row)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"malformed export: bad {table} row ({type(exc).__name__}: {exc})") from exc
        self.counts[table] = self.counts.get(table, 0) + 1

    def _add_workspace(self, r: Row) -> None:
        if self.workspace is not None:
            raise InvalidRequest("malformed export: a second workspace row")
        sid = str(r["sid"])
        if self.conn.one("SELECT 1 FROM workspaces WHERE sid = ?", (sid,)):
            raise AlreadyExists(
                f"workspace {sid!r} already exists in the target store: delete it there first, or import elsewhere",
                code="workspace_exists",
            )
        name, created_at = str(r["name"]), int(r["created_at"])
        ws_id = self._insert("workspaces", {"sid": sid, "name": name, "created_at": created_at})
        self.workspace = Workspace(id=ws_id, sid=sid, name=name, created_at=created_at)

    def _add_spaces(self, r: Row) -> None:
        values = {"sid": r["sid"], "workspace_id": self.ws_id, "kind": r["kind"], "name": r["name"],
                  "created_at": r["created_at"], "updated_at": r["updated_at"]}  # fmt: skip
        self.spaces[str(r["sid"])] = self._insert("spaces", values)

    def _add_groups(self, r: Row) -> None:
        values = {"sid": r["sid"], "workspace_id": self.ws_id, "name": r["name"], "kind": r["kind"],
                  "created_at": r["created_at"]}  # fmt: skip
        self.groups[str(r["sid"])] = self._insert("groups", values)

    def _add_space_groups(self, r: Row) -> None:
        self._link("space_groups", {"space_id": self._ref(self.spaces, r["space"], "space"),
                                    "group_id": self._ref(self.groups, r["group"], "group")})  # fmt: skip

    def _add_data_sources(self, r: Row) -> None:
        values = {"sid": r["sid"], "core_id": r["core_id"], "workspace_id": self.ws_id,
                  "space_id": self._ref(self.spaces, r["space"], "space"), "name": r["name"],
                  "description": r["description"], "connector_provider": r["connector_provider"],
                  "embedder": r["embedder"], "dim": int(r["dim"]), "chunk_size": r["chunk_size"],
                  "created_at": r["created_at"], "uuid": r["uuid"], "dify": _json(r["dify"] or {}),
                  "updated_at": r["updated_at"]}  # fmt: skip
        ds_id = self._insert("data_sources", values)
        ds = data_sources_where(self.conn, "id = ?", (ds_id,))[0]
        self.data_sources[str(r["sid"])] = ds
        self.load.add_data_source(ds)

    def _add_data_source_views(self, r: Row) -> None:
        values = {"sid": r["sid"], "workspace_id": self.ws_id, "space_id": self._ref(self.spaces, r["space"], "space"),
                  "data_source_id": self._ds(r["data_source"]), "kind": r["kind"],
                  "parents_in": _json(r["parents_in"]), "created_at": r["created_at"],
                  "updated_at": r["updated_at"]}  # fmt: skip
        self._insert("data_source_views", values)

    def _add_api_keys(self, r: Row) -> None:
        values = {"workspace_id": self.ws_id, "name": r["name"], "role": r["role"], "key_hash": r["key_hash"],
                  "prefix": r["prefix"], "created_at": r["created_at"], "disabled_at": r["disabled_at"],
                  "data_source_id": self._opt_ds(r["data_source"])}  # fmt: skip
        self.keys[str(r["key_hash"])] = self._insert("api_keys", values)

    def _add_group_keys(self, r: Row) -> None:
        self._link("group_keys", {"group_id": self._ref(self.groups, r["group"], "group"),
                                  "api_key_id": self._ref(self.keys, r["key"], "API key")})  # fmt: skip

    def _add_dataset_tags(self, r: Row) -> None:
        values = {"uuid": r["uuid"], "workspace_id": self.ws_id, "name": r["name"], "created_at": r["created_at"]}
        self.tags[str(r["uuid"])] = self._insert("dataset_tags", values)

    def _add_dataset_tag_bindings(self, r: Row) -> None:
        self._link("dataset_tag_bindings", {"tag_pk": self._ref(self.tags, r["tag"], "tag"),
                                            "data_source_id": self._ds(r["data_source"]),
                                            "created_at": r["created_at"]})  # fmt: skip

    def _add_metadata_fields(self, r: Row) -> None:
        values = {"uuid": r["uuid"], "data_source_id": self._ds(r["data_source"]), "name": r["name"],
                  "type": r["type"], "created_at": r["created_at"]}  # fmt: skip
        self._insert("metadata_fields", values)

    def _add_files(self, r: Row) -> None:
        data = r["data"]
        if not isinstance(data, bytes):
            raise TypeError("file data is not bytes")
        values = {"uuid": r["uuid"], "workspace_id": self.ws_id, "name": r["name"], "size": r["size"],
                  "extension": r["extension"], "mime_type": r["mime_type"], "data": data,
                  "created_at": r["created_at"], "purpose": r.get("purpose"),
                  "scope_data_source_id": self._opt_ds(r.get("scope_data_source"))}  # fmt: skip
        self._insert("files", values)

    def _add_folders(self, r: Row) -> None:
        values = {"data_source_id": self._ds(r["data_source"]), "folder_id": r["folder_id"], "title": r["title"],
                  "parents": _json(r["parents"]), "parent_id": r["parent_id"], "mime_type": r["mime_type"],
                  "source_url": r["source_url"], "provider_visibility": r["provider_visibility"],
                  "timestamp": r["timestamp"], "created": r["created"], "updated": r["updated"]}  # fmt: skip
        self._insert("folders", values)

    def _add_data_tables(self, r: Row) -> None:
        values = {"data_source_id": self._ds(r["data_source"]), "table_id": r["table_id"], "name": r["name"],
                  "title": r["title"], "description": r["description"], "mime_type": r["mime_type"],
                  "timestamp": r["timestamp"], "tags": _json(r["tags"]), "parents": _json(r["parents"]),
                  "parent_id": r["parent_id"], "source_url": r["source_url"],
                  "remote_database_table_id": r["remote_database_table_id"],
                  "remote_database_secret_id": r["remote_database_secret_id"], "schema": _json(r["schema"]),
                  "schema_stale": bool(r["schema_stale"]), "rows_version": r["rows_version"],
                  "created": r["created"], "updated": r["updated"]}  # fmt: skip
        self.tables[(str(r["data_source"]), str(r["table_id"]))] = self._insert("data_tables", values)

    def _add_table_rows(self, r: Row) -> None:
        pk = self.tables.get((str(r["data_source"]), str(r["table"])))
        if pk is None:
            raise InvalidRequest(f"malformed export: unknown table {r['table']!r}")
        if not isinstance(r["value"], str):
            raise TypeError("a table row's value is its JSON text")
        self._link("table_rows", {"table_pk": pk, "row_id": r["row_id"], "value": r["value"]})

    def _add_documents(self, r: Row) -> None:
        ds_id = self._ds(r["data_source"])
        ds = self.data_sources[str(r["data_source"])]
        tags, parents = list(r["tags"]), list(r["parents"])
        values = {"data_source_id": ds_id, "document_id": r["document_id"], "title": r["title"],
                  "mime_type": r["mime_type"], "source_url": r["source_url"], "timestamp": r["timestamp"],
                  "tags": _json(tags), "parents": _json(parents), "parent_id": r["parent_id"],
                  "section": r["section"], "text": r["text"], "hash": r["hash"], "text_size": r["text_size"],
                  "chunk_count": r["chunk_count"], "token_count": r["token_count"], "created": r["created"],
                  "updated": r["updated"], "index_state": r["index_state"], "index_error": r["index_error"],
                  "uuid": r["uuid"], "position": r["position"], "enabled": bool(r["enabled"]),
                  "archived": bool(r["archived"]), "disabled_at": r["disabled_at"],
                  "doc_metadata": _json(r["doc_metadata"] or {}), "batch": r["batch"],
                  "dify": _json(r["dify"])}  # fmt: skip
        pk = self._insert("documents", values)
        # the tag and parent rows the filters read: derived from the document's lists, as every writer does
        self.conn.executemany(
            "INSERT INTO document_tags (tag, document_pk) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(t, pk) for t in dict.fromkeys(tags)],
        )
        self.conn.executemany(
            "INSERT INTO document_parents (parent, document_pk) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(p, pk) for p in dict.fromkeys(parents)],
        )
        if r["index_state"] not in ("indexed", "failed"):
            self.waiting[(ds_id, str(r["document_id"]))] = (str(r["hash"]), index_kind(r["dify"]))
        self.doc = _Document(str(r["uuid"]), pk, ds, {}, {}, [], [])

    def _current(self, document_uuid: object) -> _Document:
        if self.doc is None or (document_uuid is not None and str(document_uuid) != self.doc.uuid):
            raise InvalidRequest("malformed export: a segment or chunk away from its document")
        return self.doc

    def _add_segments(self, r: Row) -> None:
        doc = self._current(r["document"])
        values = {"uuid": r["uuid"], "data_source_id": doc.ds.id, "document_pk": doc.pk,
                  "position": r["position"], "content": r["content"], "answer": r["answer"],
                  "keywords": _json(r["keywords"] or []), "hash": r["hash"], "index_node_id": r["index_node_id"],
                  "word_count": r["word_count"], "tokens": r["tokens"], "enabled": bool(r["enabled"]),
                  "status": r["status"], "error": r["error"], "hit_count": r["hit_count"],
                  "created_at": r["created_at"], "updated_at": r["updated_at"], "disabled_at": r["disabled_at"],
                  "indexing_at": r["indexing_at"], "completed_at": r["completed_at"],
                  "stopped_at": r["stopped_at"]}  # fmt: skip
        doc.segments[str(r["uuid"])] = self._insert("segments", values)

    def _add_child_chunks(self, r: Row) -> None:
        doc = self._current(None)
        values = {"uuid": r["uuid"], "segment_pk": self._ref(doc.segments, r["segment"], "segment"),
                  "document_pk": doc.pk, "position": r["position"], "content": r["content"],
                  "word_count": r["word_count"], "type": r["type"], "created_at": r["created_at"],
                  "updated_at": r["updated_at"]}  # fmt: skip
        doc.children[str(r["uuid"])] = self._insert("child_chunks", values)

    def _add_chunks(self, r: Row) -> None:
        doc = self._current(r["document"])
        raw = r["vector"]
        if not isinstance(raw, bytes) or len(raw) != 4 * doc.ds.dim:
            raise ValueError(f"a vector of {doc.ds.dim} float32 values is {4 * doc.ds.dim} bytes")
        segment = None if r["segment"] is None else self._ref(doc.segments, r["segment"], "segment")
        child = None if r["child"] is None else self._ref(doc.children, r["child"], "child chunk")
        doc.chunks.append(ChunkWrite(int(r["offset"]), str(r["text"]), str(r["hash"]), int(r["token_count"]),
                                     segment, child))  # fmt: skip
        doc.vectors.append(np.frombuffer(raw, dtype="<f4"))

    def _flush(self) -> None:
        """Write the current document's chunks (through the backend's chunk writer)."""
        doc = self.doc
        if doc is not None and doc.chunks:
            vectors = np.ascontiguousarray(np.stack(doc.vectors), dtype=np.float32)
            self.load.add(doc.ds, doc.pk, doc.chunks, vectors)
        self.doc = None

    def _add_jobs(self, r: Row) -> None:
        """A live job of the source, queued here (a running one's lease was a source worker's)."""
        ds_id = self._opt_ds(r["data_source"])
        payload = r["payload"]
        if not isinstance(payload, dict):
            raise TypeError("a job's payload is an object")
        values = {"kind": r["kind"], "workspace_id": self.ws_id, "data_source_id": ds_id, "subject": r["subject"],
                  "payload": Job.encode_payload(payload), "state": "queued", "attempts": int(r["attempts"]),
                  "error": r["error"], "created_at": r["created_at"], "updated_at": r["updated_at"],
                  "run_after": r["run_after"], "lease_owner": None, "lease_until": 0}  # fmt: skip
        self._insert("jobs", values)
        if ds_id is not None and r["subject"] is not None:
            self.queued.add((ds_id, str(r["subject"])))

    def finish(self) -> Workspace:
        """After the last row: the last chunks and an index job for each document still waiting without one.
        Returns the imported workspace."""
        self._flush_links()
        self._flush()
        if self.workspace is None:
            raise InvalidRequest("malformed export: no workspace row")
        for (ds_id, document_id), (doc_hash, kind) in self.waiting.items():
            if (ds_id, document_id) not in self.queued:
                payload = Job.encode_payload({"document_id": document_id, "hash": doc_hash})
                values = {"kind": kind, "workspace_id": self.ws_id, "data_source_id": ds_id,
                          "subject": document_id, "payload": payload, "state": "queued", "attempts": 0,
                          "created_at": self.now_ms, "updated_at": self.now_ms, "run_after": self.now_ms}  # fmt: skip
                self._insert("jobs", values)
                self.counts["requeued"] = self.counts.get("requeued", 0) + 1
        return self.workspace


def import_rows(load: ChunkLoad, rows: Iterable[tuple[str, Row]], now_ms: int) -> Workspace:
    """Write an export's rows (file order) in ``load``'s transaction, which the caller owns."""
    importer = WorkspaceImporter(load, now_ms)
    for table, row in rows:
        importer.add(table, row)
    return importer.finish()


def _is_bad_data(exc: BaseException | None) -> bool:
    """A driver's integrity or data error (DB-API 2.0 classes, whatever the driver): the rows were malformed."""
    return exc is not None and any(c.__name__ in ("IntegrityError", "DataError") for c in type(exc).__mro__)


class Transfer:
    """Export and import of a whole workspace (``alexandria export`` / ``import``; the file is
    ``alexandria/transfer.py``'s)."""

    db: Database
    index: ChunkIndex

    def iter_workspace_rows(self, workspace_sid: str) -> Iterator[tuple[str, Row]]:
        """The workspace's rows in one consistent snapshot (held until the iterator ends or is closed)."""
        with self.db.snapshot() as conn:
            yield from export_rows(conn, self.index, workspace_sid)

    def import_rows(self, rows: Iterable[tuple[str, Row]]) -> Workspace:
        """Write an export's rows in one transaction: all or nothing. Index structures (keyword tables or
        postings, ANN indexes) are the engine's, complete when this returns."""
        try:
            with self.index.loading() as load:
                return import_rows(load, rows, now_ms())
        except DuplicateKey as exc:
            cause = exc.__cause__
            detail = getattr(getattr(cause, "diag", None), "message_detail", None) or str(cause or exc)
            raise AlreadyExists(
                f"the target store already holds an object of this workspace ({detail})", code="already_exists"
            ) from exc
        except StorageError as exc:
            if _is_bad_data(exc.__cause__):
                raise InvalidRequest(f"malformed export: {exc.__cause__}") from exc
            raise
