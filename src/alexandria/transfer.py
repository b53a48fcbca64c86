"""Moving a workspace between stores: ``alexandria export`` and ``alexandria import``.

A workspace leaves one store (SQLite or PostgreSQL) as one streamed file and enters another (of either kind) with
every id its clients know, and with its vectors (nothing is embedded again). This module holds the backend-neutral
parts: the row model (what each table's rows carry, internal integer ids replaced by natural keys), the exporter and
the importer (plain SQL over a small session each backend provides: ``storage/sqlite/transfer.py`` and
``storage/postgres/transfer.py``), the file format, and the two CLI commands.

The file, version 1: JSON Lines (UTF-8; gzip-compressed when its name ends with ``.gz``).

* line 1, the header: ``{"format": "alexandria-export", "version": 1, "workspace": <sid>, "source": <backend>,
  "exported_at": <epoch ms>, "vectors": "base64 float32 little-endian", "blobs": "base64", "counts": {table: n}}``;
* one line per row, ``{"t": <table>, "r": {...}}``, parents before children: the workspace, spaces, groups, space
  groups, data sources, views, API keys, group keys, dataset tags and their bindings, metadata fields, files,
  folders, tables, table rows, then each document followed by its segments, child chunks and chunks, and last the
  live jobs;
* the last line, ``{"end": {"counts": {table: n}}}``: an import without it, or whose counts differ, fails whole.

Rows name each other by natural keys (space/group/view/data source sIds, Dify UUIDs, API key hashes, table ids),
never by integer ids: the target assigns its own and rewrites every foreign key. Vectors travel as base64 float32
(the chunks' stored vectors, bit for bit), file contents as base64. Table rows keep their JSON text as written.

What moves: everything of the workspace, with its ids and timestamps (API key hashes too: keys keep working).
The queue's live jobs (queued or running) move as queued (a running job's lease belongs to a worker of the source
store; attempts are kept), and a document still in the pipeline without one gets an index job, so every document
not yet indexed is indexed by the target's workers. Not moved: finished jobs (history), the stores' internal ids and
caches (search statistics, ANN indexes: rebuilt by the target from the rows), and the installation's secrets (they
sign short-lived file download URLs of one installation).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import numpy as np

from alexandria.domain.jobs import INDEX_DOCUMENT, Job
from alexandria.domain.models import Workspace
from alexandria.errors import AlreadyExists, InvalidRequest, NotFound, StorageError
from alexandria.ingest.base import Vectors
from alexandria.storage.base import ChunkWrite

if TYPE_CHECKING:
    import click

    from alexandria.storage.base import Store

FORMAT = "alexandria-export"
VERSION = 1
COUNTS = "#counts"  # the pseudo-row an export stream starts with: {table: rows to come}
Row = dict[str, Any]

# --- the sessions a backend provides ----------------------------------------------------------------------------


class ExportSession(Protocol):
    """A backend's read-only connection inside one consistent snapshot. SQL uses ``?`` placeholders."""

    vector_column: str  # the chunks' vector column: ``vector`` (SQLite BLOB) or ``embedding`` (pgvector)

    def query(self, sql: str, params: Sequence[object]) -> Sequence[Sequence[Any]]: ...
    def vector_bytes(self, value: object) -> bytes: ...  # a stored vector as float32 little-endian bytes


class ImportSession(Protocol):
    """A backend's connection inside the import's one write transaction. SQL uses ``?`` placeholders."""

    def query(self, sql: str, params: Sequence[object]) -> Sequence[Sequence[Any]]: ...
    def insert(self, sql: str, params: Sequence[object]) -> int: ...  # an INSERT ... RETURNING id
    def executemany(self, sql: str, params: Sequence[Sequence[object]]) -> None: ...
    def add_data_source(self, data_source_id: int, dim: int) -> None: ...  # its search structures (FTS table...)
    def insert_chunks(
        self, data_source_id: int, document_pk: int, chunks: Sequence[ChunkWrite], vectors: Vectors
    ) -> None: ...  # through the backend's own chunk writer (FTS rows, or tsvector/tf/length and BM25 statistics)
    def finish(self, data_source_ids: Sequence[int]) -> None: ...  # after the last row (ANN indexes, versions)


# --- the row model ----------------------------------------------------------------------------------------------

_DOCS = "JOIN documents doc ON doc.id = {t}.document_pk JOIN data_sources d ON d.id = doc.data_source_id"


@dataclass(frozen=True)
class _Spec:
    """How one table's rows of a workspace are read: ``cols`` (one per field, after ``key`` when paged) ``source``
    (FROM ... WHERE, whose one ``?`` is the workspace id)."""

    table: str
    fields: tuple[str, ...]
    cols: str
    source: str
    key: str = ""  # internal id column to page by; "" for small link tables, read whole in ``order``
    order: str = ""
    json: frozenset[str] = frozenset()
    bools: frozenset[str] = frozenset()
    page: int = 2000


def _spec(table: str, fields: str, cols: str, source: str, **kw: Any) -> _Spec:
    return _Spec(table, tuple(fields.split()), cols, source, **kw)


_F = frozenset
SPECS: tuple[_Spec, ...] = (
    _spec("spaces", "sid kind name created_at updated_at", "s.sid, s.kind, s.name, s.created_at, s.updated_at",
          "FROM spaces s WHERE s.workspace_id = ?", key="s.id"),
    _spec("groups", "sid name kind created_at", "g.sid, g.name, g.kind, g.created_at",
          "FROM groups g WHERE g.workspace_id = ?", key="g.id"),
    _spec("space_groups", "space group", "s.sid, g.sid",
          "FROM space_groups sg JOIN spaces s ON s.id = sg.space_id JOIN groups g ON g.id = sg.group_id "
          "WHERE s.workspace_id = ?", order="s.id, g.id"),
    _spec("data_sources",
          "sid core_id space name description connector_provider embedder dim chunk_size created_at uuid dify "
          "updated_at",
          "d.sid, d.core_id, s.sid, d.name, d.description, d.connector_provider, d.embedder, d.dim, d.chunk_size, "
          "d.created_at, d.uuid, d.dify, d.updated_at",
          "FROM data_sources d JOIN spaces s ON s.id = d.space_id WHERE d.workspace_id = ?", key="d.id",
          json=_F({"dify"})),
    _spec("data_source_views", "sid space data_source kind parents_in created_at updated_at",
          "v.sid, s.sid, d.sid, v.kind, v.parents_in, v.created_at, v.updated_at",
          "FROM data_source_views v JOIN spaces s ON s.id = v.space_id JOIN data_sources d ON d.id = v.data_source_id "
          "WHERE v.workspace_id = ?", key="v.id", json=_F({"parents_in"})),
    _spec("api_keys", "key_hash name role prefix created_at disabled_at data_source",
          "k.key_hash, k.name, k.role, k.prefix, k.created_at, k.disabled_at, d.sid",
          "FROM api_keys k LEFT JOIN data_sources d ON d.id = k.data_source_id WHERE k.workspace_id = ?", key="k.id"),
    _spec("group_keys", "group key", "g.sid, k.key_hash",
          "FROM group_keys gk JOIN groups g ON g.id = gk.group_id JOIN api_keys k ON k.id = gk.api_key_id "
          "WHERE g.workspace_id = ?", order="g.id, k.id"),
    _spec("dataset_tags", "uuid name created_at", "t.uuid, t.name, t.created_at",
          "FROM dataset_tags t WHERE t.workspace_id = ?", key="t.id"),
    _spec("dataset_tag_bindings", "tag data_source created_at", "t.uuid, d.sid, b.created_at",
          "FROM dataset_tag_bindings b JOIN dataset_tags t ON t.id = b.tag_pk "
          "JOIN data_sources d ON d.id = b.data_source_id WHERE t.workspace_id = ?", order="t.id, d.id"),
    _spec("metadata_fields", "uuid data_source name type created_at",
          "f.uuid, d.sid, f.name, f.type, f.created_at",
          "FROM metadata_fields f JOIN data_sources d ON d.id = f.data_source_id WHERE d.workspace_id = ?",
          key="f.id"),
    _spec("files", "uuid name size extension mime_type data created_at",
          "f.uuid, f.name, f.size, f.extension, f.mime_type, f.data, f.created_at",
          "FROM files f WHERE f.workspace_id = ?", key="f.id", page=16),
    _spec("folders",
          "data_source folder_id title parents parent_id mime_type source_url provider_visibility timestamp created "
          "updated",
          "d.sid, f.folder_id, f.title, f.parents, f.parent_id, f.mime_type, f.source_url, f.provider_visibility, "
          "f.timestamp, f.created, f.updated",
          "FROM folders f JOIN data_sources d ON d.id = f.data_source_id WHERE d.workspace_id = ?", key="f.id",
          json=_F({"parents"})),
    _spec("data_tables",
          "data_source table_id name title description mime_type timestamp tags parents parent_id source_url "
          "remote_database_table_id remote_database_secret_id schema schema_stale rows_version created updated",
          "d.sid, t.table_id, t.name, t.title, t.description, t.mime_type, t.timestamp, t.tags, t.parents, "
          "t.parent_id, t.source_url, t.remote_database_table_id, t.remote_database_secret_id, t.schema, "
          "t.schema_stale, t.rows_version, t.created, t.updated",
          "FROM data_tables t JOIN data_sources d ON d.id = t.data_source_id WHERE d.workspace_id = ?", key="t.id",
          json=_F({"tags", "parents", "schema"}), bools=_F({"schema_stale"})),
    # a row's value is its JSON text as stored (PostgreSQL's `json` keeps it as written): never re-encoded
    _spec("table_rows", "data_source table row_id value", "d.sid, t.table_id, r.row_id, CAST(r.value AS TEXT)",
          "FROM table_rows r JOIN data_tables t ON t.id = r.table_pk JOIN data_sources d ON d.id = t.data_source_id "
          "WHERE d.workspace_id = ?", key="r.id"),
    _spec("documents",
          "data_source document_id title mime_type source_url timestamp tags parents parent_id section text hash "
          "text_size chunk_count token_count created updated index_state index_error uuid position enabled archived "
          "disabled_at doc_metadata batch dify",
          "d.sid, doc.document_id, doc.title, doc.mime_type, doc.source_url, doc.timestamp, doc.tags, doc.parents, "
          "doc.parent_id, doc.section, doc.text, doc.hash, doc.text_size, doc.chunk_count, doc.token_count, "
          "doc.created, doc.updated, doc.index_state, doc.index_error, doc.uuid, doc.position, doc.enabled, "
          "doc.archived, doc.disabled_at, doc.doc_metadata, doc.batch, doc.dify",
          "FROM documents doc JOIN data_sources d ON d.id = doc.data_source_id WHERE d.workspace_id = ?",
          key="doc.id", json=_F({"tags", "parents", "doc_metadata", "dify"}), bools=_F({"enabled", "archived"}),
          page=32),
    # a document's dependents: read for a range of documents (their pk first), written right after the document
    _spec("segments",
          "uuid document position content answer keywords hash index_node_id word_count tokens enabled status error "
          "hit_count created_at updated_at disabled_at indexing_at completed_at stopped_at",
          "s.document_pk, s.uuid, doc.uuid, s.position, s.content, s.answer, s.keywords, s.hash, s.index_node_id, "
          "s.word_count, s.tokens, s.enabled, s.status, s.error, s.hit_count, s.created_at, s.updated_at, "
          "s.disabled_at, s.indexing_at, s.completed_at, s.stopped_at",
          f"FROM segments s {_DOCS.format(t='s')} WHERE d.workspace_id = ?", key="s.document_pk",
          order="s.document_pk, s.position, s.id", json=_F({"keywords"}), bools=_F({"enabled"})),
    _spec("child_chunks", "uuid segment position content word_count type created_at updated_at",
          "s.document_pk, c.uuid, s.uuid, c.position, c.content, c.word_count, c.type, c.created_at, c.updated_at",
          f"FROM child_chunks c JOIN segments s ON s.id = c.segment_pk {_DOCS.format(t='s')} WHERE d.workspace_id = ?",
          key="s.document_pk", order="s.document_pk, s.position, s.id, c.position, c.id"),
    _spec("chunks", "document offset text hash token_count vector segment child",
          "c.document_pk, doc.uuid, c.chunk_offset, c.text, c.hash, c.token_count, c.{vector}, s.uuid, cc.uuid",
          f"FROM chunks c {_DOCS.format(t='c')} LEFT JOIN segments s ON s.id = c.segment_pk "
          "LEFT JOIN child_chunks cc ON cc.id = c.child_pk WHERE d.workspace_id = ?",
          key="c.document_pk", order="c.document_pk, c.chunk_offset, c.id"),
    _spec("jobs", "kind data_source subject payload state attempts error created_at updated_at run_after",
          "j.kind, d.sid, j.subject, j.payload, j.state, j.attempts, j.error, j.created_at, j.updated_at, j.run_after",
          "FROM jobs j LEFT JOIN data_sources d ON d.id = j.data_source_id "
          "WHERE j.workspace_id = ? AND j.state IN ('queued', 'running')", key="j.id", json=_F({"payload"})),
)  # fmt: skip
SPEC = {s.table: s for s in SPECS}
DEPENDENTS = ("segments", "child_chunks", "chunks")
TABLES = ("workspace", *SPEC)
BINARY = {("files", "data"), ("chunks", "vector")}  # bytes in rows, base64 in the file
DOCUMENT_CHUNK_BUDGET = 4096  # chunks read at once (a range of documents' chunks, at least one document's)


def _value(spec: _Spec, name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in spec.json:
        return json.loads(value) if isinstance(value, str | bytes) else value
    if name in spec.bools:
        return bool(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _row(spec: _Spec, values: Sequence[Any]) -> Row:
    return {name: _value(spec, name, v) for name, v in zip(spec.fields, values, strict=True)}


# --- export -----------------------------------------------------------------------------------------------------


def export_rows(session: ExportSession, workspace_sid: str) -> Iterator[tuple[str, Row]]:
    """The workspace's rows, in file order, after a ``(COUNTS, {table: n})`` pseudo-row; the caller holds the
    snapshot open until the iterator ends."""
    found = session.query("SELECT id, sid, name, created_at FROM workspaces WHERE sid = ?", (workspace_sid,))
    if not found:
        raise NotFound(f"no workspace {workspace_sid!r} in this store", code="workspace_not_found")
    ws_id = int(found[0][0])
    counts = {"workspace": 1}
    for spec in SPECS:
        counts[spec.table] = int(session.query(f"SELECT count(*) {spec.source}", (ws_id,))[0][0])
    yield COUNTS, counts
    yield "workspace", {"sid": str(found[0][1]), "name": str(found[0][2]), "created_at": int(found[0][3])}
    for spec in SPECS:
        if spec.table == "documents":
            yield from _documents(session, ws_id)
        elif spec.table not in DEPENDENTS:
            yield from _paged(session, spec, ws_id)


def _page_sql(spec: _Spec) -> str:
    """The next page of a table's rows after a key (keyset paging: the key first, then the fields)."""
    return f"SELECT {spec.key}, {spec.cols} {spec.source} AND {spec.key} > ? ORDER BY {spec.key} LIMIT ?"


def _paged(session: ExportSession, spec: _Spec, ws_id: int) -> Iterator[tuple[str, Row]]:
    if not spec.key:
        for values in session.query(f"SELECT {spec.cols} {spec.source} ORDER BY {spec.order}", (ws_id,)):
            yield spec.table, _row(spec, values)
        return
    last = -1
    while True:
        page = session.query(_page_sql(spec), (ws_id, last, spec.page))
        for values in page:
            yield spec.table, _row(spec, values[1:])
        if len(page) < spec.page:
            return
        last = int(page[-1][0])


def _documents(session: ExportSession, ws_id: int) -> Iterator[tuple[str, Row]]:
    """Each document followed by its segments, child chunks and chunks (read for ranges of documents)."""
    spec = SPEC["documents"]
    chunk_count_at = spec.fields.index("chunk_count") + 1
    last = -1
    while True:
        page = session.query(_page_sql(spec), (ws_id, last, spec.page))
        group: list[Sequence[Any]] = []
        budget = 0
        for values in page:
            if group and budget + int(values[chunk_count_at]) > DOCUMENT_CHUNK_BUDGET:
                yield from _document_group(session, ws_id, group)
                group, budget = [], 0
            group.append(values)
            budget += int(values[chunk_count_at])
        if group:
            yield from _document_group(session, ws_id, group)
        if len(page) < spec.page:
            return
        last = int(page[-1][0])


def _document_group(session: ExportSession, ws_id: int, docs: Sequence[Sequence[Any]]) -> Iterator[tuple[str, Row]]:
    first, last = int(docs[0][0]), int(docs[-1][0])
    deps: dict[int, list[tuple[str, Row]]] = {int(d[0]): [] for d in docs}
    for table in DEPENDENTS:
        spec = SPEC[table]
        cols = spec.cols.format(vector=session.vector_column)
        sql = f"SELECT {cols} {spec.source} AND {spec.key} BETWEEN ? AND ? ORDER BY {spec.order}"
        for values in session.query(sql, (ws_id, first, last)):
            row = _row(spec, values[1:])
            if table == "chunks":
                row["vector"] = session.vector_bytes(values[spec.fields.index("vector") + 1])
            deps[int(values[0])].append((table, row))
    for values in docs:
        yield "documents", _row(SPEC["documents"], values[1:])
        yield from deps[int(values[0])]


# --- import -----------------------------------------------------------------------------------------------------


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
    data_source_id: int
    dim: int
    segments: dict[str, int]
    children: dict[str, int]
    chunks: list[ChunkWrite]
    vectors: list[Vectors]


class WorkspaceImporter:
    """Writes an export's rows through an :class:`ImportSession`, mapping natural keys to the ids the target
    assigns. Rows must come in file order (a row's parents before it)."""

    def __init__(self, session: ImportSession, now_ms: int) -> None:
        self.s = session
        self.now_ms = now_ms
        self.workspace: Workspace | None = None
        self.spaces: dict[str, int] = {}
        self.groups: dict[str, int] = {}
        self.data_sources: dict[str, tuple[int, int]] = {}  # sid -> (id, dim)
        self.keys: dict[str, int] = {}
        self.tags: dict[str, int] = {}
        self.tables: dict[tuple[str, str], int] = {}
        self.doc: _Document | None = None
        self.waiting: dict[tuple[int, str], str] = {}  # (data source id, document id) -> hash, not yet indexed
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
        return found[0]

    def _opt_ds(self, sid: object) -> int | None:
        return None if sid is None else self._ds(sid)

    def _insert(self, table: str, values: Mapping[str, object]) -> int:
        return self.s.insert(_insert_sql(table, values), tuple(values.values()))

    def _link(self, table: str, values: Mapping[str, object]) -> None:
        """Queue a row that nothing refers to (link tables, table rows): written in batches."""
        sql = _insert_sql(table, values, returning=False)
        if sql != self.link_sql or len(self.links) >= 1000:
            self._flush_links()
            self.link_sql = sql
        self.links.append(tuple(values.values()))

    def _flush_links(self) -> None:
        if self.links:
            self.s.executemany(self.link_sql, self.links)
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
        if self.s.query("SELECT 1 FROM workspaces WHERE sid = ?", (sid,)):
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
        self.data_sources[str(r["sid"])] = (ds_id, int(r["dim"]))
        self.s.add_data_source(ds_id, int(r["dim"]))

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
                  "created_at": r["created_at"]}  # fmt: skip
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
        dim = self.data_sources[str(r["data_source"])][1]
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
        self.s.executemany(
            "INSERT INTO document_tags (tag, document_pk) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(t, pk) for t in dict.fromkeys(tags)],
        )
        self.s.executemany(
            "INSERT INTO document_parents (parent, document_pk) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(p, pk) for p in dict.fromkeys(parents)],
        )
        if r["index_state"] not in ("indexed", "failed"):
            self.waiting[(ds_id, str(r["document_id"]))] = str(r["hash"])
        self.doc = _Document(str(r["uuid"]), pk, ds_id, dim, {}, {}, [], [])

    def _current(self, document_uuid: object) -> _Document:
        if self.doc is None or (document_uuid is not None and str(document_uuid) != self.doc.uuid):
            raise InvalidRequest("malformed export: a segment or chunk away from its document")
        return self.doc

    def _add_segments(self, r: Row) -> None:
        doc = self._current(r["document"])
        values = {"uuid": r["uuid"], "data_source_id": doc.data_source_id, "document_pk": doc.pk,
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
        if not isinstance(raw, bytes) or len(raw) != 4 * doc.dim:
            raise ValueError(f"a vector of {doc.dim} float32 values is {4 * doc.dim} bytes")
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
            self.s.insert_chunks(doc.data_source_id, doc.pk, doc.chunks, vectors)
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
        """After the last row: the last chunks, an index job for each document still waiting without one, and the
        backend's closing work. Returns the imported workspace."""
        self._flush_links()
        self._flush()
        if self.workspace is None:
            raise InvalidRequest("malformed export: no workspace row")
        for (ds_id, document_id), doc_hash in self.waiting.items():
            if (ds_id, document_id) not in self.queued:
                payload = Job.encode_payload({"document_id": document_id, "hash": doc_hash})
                values = {"kind": INDEX_DOCUMENT, "workspace_id": self.ws_id, "data_source_id": ds_id,
                          "subject": document_id, "payload": payload, "state": "queued", "attempts": 0,
                          "created_at": self.now_ms, "updated_at": self.now_ms, "run_after": self.now_ms}  # fmt: skip
                self._insert("jobs", values)
                self.counts["requeued"] = self.counts.get("requeued", 0) + 1
        self.s.finish([ds_id for ds_id, _ in self.data_sources.values()])
        return self.workspace


def import_rows(session: ImportSession, rows: Iterable[tuple[str, Row]], now_ms: int) -> Workspace:
    """Write an export's rows (file order) through ``session``; the caller owns the transaction."""
    importer = WorkspaceImporter(session, now_ms)
    for table, row in rows:
        importer.add(table, row)
    return importer.finish()


# --- the file ---------------------------------------------------------------------------------------------------


def _encode(table: str, row: Row) -> Row:
    return {k: base64.b64encode(v).decode("ascii") if (table, k) in BINARY and v is not None else v
            for k, v in row.items()}  # fmt: skip


def _decode(table: str, row: Row) -> Row:
    for field in ("data", "vector"):
        value = row.get(field)
        if (table, field) in BINARY and isinstance(value, str):
            row[field] = base64.b64decode(value, validate=True)
    return row


def _line(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def write_export(
    rows: Iterator[tuple[str, Row]],
    out: IO[str],
    *,
    source: str,
    workspace_sid: str,
    now_ms: int,
    on_start: Callable[[int], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write a store's export stream (``Store.iter_workspace_rows``) as the export file; returns the rows written by
    table. ``on_start(total)`` and ``on_rows(n)`` report progress."""
    first = next(rows, None)
    if first is None or first[0] != COUNTS:
        raise InvalidRequest("the store's export stream does not start with its counts")
    expected = {str(k): int(v) for k, v in first[1].items()}
    header = {"format": FORMAT, "version": VERSION, "workspace": workspace_sid, "source": source,
              "exported_at": now_ms, "vectors": "base64 float32 little-endian", "blobs": "base64",
              "counts": expected}  # fmt: skip
    out.write(_line(header))
    if on_start is not None:
        on_start(sum(expected.values()))
    counts: dict[str, int] = {}
    pending = 0
    for table, row in rows:
        out.write(_line({"t": table, "r": _encode(table, row)}))
        counts[table] = counts.get(table, 0) + 1
        pending += 1
        if on_rows is not None and pending >= 256:
            on_rows(pending)
            pending = 0
    if on_rows is not None and pending:
        on_rows(pending)
    if counts != {t: n for t, n in expected.items() if n}:  # one snapshot: what was counted is what was read
        raise StorageError(f"the export read {counts}, its snapshot counted {expected}")
    out.write(_line({"end": {"counts": counts}}))
    return counts


@dataclass(frozen=True)
class ExportHeader:
    workspace: str
    source: str
    exported_at: int
    counts: dict[str, int]


def read_export(inp: IO[str]) -> tuple[ExportHeader, Iterator[tuple[str, Row]]]:
    """The header of an export file and an iterator over its rows, which fails (InvalidRequest) on a malformed or
    truncated file (no end line, or counts that differ from the rows read)."""
    first = inp.readline()
    try:
        head = json.loads(first) if first.strip() else None
    except json.JSONDecodeError:
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise InvalidRequest("not an Alexandria export (no alexandria-export header line)")
    if head.get("version") != VERSION:
        raise InvalidRequest(f"unsupported export version {head.get('version')!r} (this version reads {VERSION})")
    try:
        counts = {str(k): int(v) for k, v in dict(head.get("counts") or {}).items()}
        header = ExportHeader(
            str(head["workspace"]), str(head.get("source")), int(head.get("exported_at") or 0), counts
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"malformed export header ({type(exc).__name__}: {exc})") from exc

    def rows() -> Iterator[tuple[str, Row]]:
        seen: dict[str, int] = {}
        ended: dict[str, int] | None = None
        for number, line in enumerate(inp, start=2):
            if not line.strip():
                continue
            if ended is not None:
                raise InvalidRequest(f"malformed export: line {number} after the end line")
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"malformed export: line {number} is not JSON ({exc.msg})") from exc
            if isinstance(obj, dict) and isinstance(obj.get("end"), dict):
                try:
                    ended = {str(k): int(v) for k, v in dict(obj["end"].get("counts") or {}).items()}
                except (TypeError, ValueError) as exc:
                    raise InvalidRequest(f"malformed export: bad end line ({exc})") from exc
                continue
            if not (isinstance(obj, dict) and isinstance(obj.get("t"), str) and isinstance(obj.get("r"), dict)):
                raise InvalidRequest(f"malformed export: line {number} is not a row")
            table = str(obj["t"])
            try:
                row = _decode(table, obj["r"])
            except ValueError as exc:
                raise InvalidRequest(f"malformed export: line {number} has bad base64 ({exc})") from exc
            seen[table] = seen.get(table, 0) + 1
            yield table, row
        if ended is None:
            raise InvalidRequest("truncated export: the end line is missing")
        if ended != seen:
            raise InvalidRequest(f"malformed export: the end line counts {ended}, the file holds {seen}")

    return header, rows()


def export_workspace(
    store: Store,
    workspace_sid: str,
    out: IO[str],
    *,
    source: str,
    now_ms: int,
    on_start: Callable[[int], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Export a workspace of ``store`` to ``out`` (one consistent snapshot); returns the rows written by table."""
    rows = store.iter_workspace_rows(workspace_sid)
    try:
        return write_export(rows, out, source=source, workspace_sid=workspace_sid, now_ms=now_ms,
                            on_start=on_start, on_rows=on_rows)  # fmt: skip
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # ends the snapshot if writing failed


def import_workspace(
    store: Store,
    inp: IO[str],
    *,
    on_start: Callable[[ExportHeader], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> Workspace:
    """Import an export file into ``store`` (one transaction: all or nothing); returns the new workspace."""
    header, rows = read_export(inp)
    if on_start is not None:
        on_start(header)

    def counted() -> Iterator[tuple[str, Row]]:
        pending = 0
        for item in rows:
            yield item
            pending += 1
            if on_rows is not None and pending >= 256:
                on_rows(pending)
                pending = 0
        if on_rows is not None and pending:
            on_rows(pending)

    return store.import_rows(counted())


# --- the CLI ----------------------------------------------------------------------------------------------------


def _open_text(path: str, write: bool, gz: bool) -> io.TextIOWrapper:
    """The export file as text: ``-`` is stdout or stdin; ``gz``: gzip-compressed."""
    if path == "-":
        return io.TextIOWrapper(sys.stdout.buffer if write else sys.stdin.buffer, encoding="utf-8")
    mode = "wb" if write else "rb"
    if gz:
        return io.TextIOWrapper(gzip.GzipFile(path, mode), encoding="utf-8")
    return io.TextIOWrapper(open(path, mode), encoding="utf-8")


def register(main: click.Group) -> None:
    """Add ``export`` and ``import`` to the ``alexandria`` command group."""
    import click

    from alexandria.cli_common import data_dir_option, err, fail, progress, settings_for
    from alexandria.errors import AlexandriaError
    from alexandria.storage import rows as rowutil
    from alexandria.storage.registry import open_store

    @main.command("export")
    @data_dir_option
    @click.option("--workspace", required=True, help="The workspace's sId.")
    @click.argument("output", type=click.Path(dir_okay=False, allow_dash=True))
    def export_command(data_dir: Path | None, workspace: str, output: str) -> None:
        """Export a workspace, vectors included, to one file (JSON Lines; gzip if it ends with .gz; - for stdout),
        read in one consistent snapshot. `alexandria import` loads it into any store."""
        settings = settings_for(data_dir)
        target = Path(output)
        partial = target.with_name(target.name + ".partial")
        try:
            store = open_store(settings)
        except AlexandriaError as exc:
            fail(exc.message)
        try:
            out = _open_text("-" if output == "-" else str(partial), write=True, gz=output.endswith(".gz"))
            try:
                with progress() as bar:
                    task = bar.add_task("exporting", total=None)
                    counts = export_workspace(
                        store,
                        workspace,
                        out,
                        source=settings.resolved_database_url().split(":", 1)[0],
                        now_ms=rowutil.now_ms(),
                        on_start=lambda total: bar.update(task, total=total),
                        on_rows=lambda n: bar.advance(task, n),
                    )
            finally:
                if output == "-":
                    out.flush()
                    out.detach()  # leave stdout open
                else:
                    out.close()
            if output != "-":
                partial.replace(target)
        except AlexandriaError as exc:
            partial.unlink(missing_ok=True)
            fail(exc.message)
        finally:
            store.close()
        err.print(f"exported workspace {workspace}: " + ", ".join(f"{n} {t}" for t, n in counts.items() if n))

    @main.command("import")
    @data_dir_option
    @click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, allow_dash=True))
    def import_command(data_dir: Path | None, input_path: str) -> None:
        """Import a workspace exported by `alexandria export` (same sIds, UUIDs, documents, vectors and key hashes:
        clients and keys keep working), in one transaction. Refused if its sId exists here. Prints its sId."""
        settings = settings_for(data_dir)
        if input_path != "-" and not Path(input_path).is_file():
            fail(f"no such file: {input_path}")
        try:
            store = open_store(settings)
        except AlexandriaError as exc:
            fail(exc.message)
        try:
            inp = _open_text(input_path, write=False, gz=input_path.endswith(".gz"))
            try:
                with progress() as bar:
                    task = bar.add_task("importing", total=None)
                    ws = import_workspace(
                        store,
                        inp,
                        on_start=lambda h: bar.update(task, total=sum(h.counts.values())),
                        on_rows=lambda n: bar.advance(task, n),
                    )
            finally:
                if input_path == "-":
                    inp.detach()
                else:
                    inp.close()
        except (AlexandriaError, OSError, EOFError, UnicodeDecodeError) as exc:
            fail(exc.message if isinstance(exc, AlexandriaError) else f"cannot read {input_path}: {exc}")
        finally:
            store.close()
        err.print(f"imported workspace {ws.sid}")
        click.echo(ws.sid)
