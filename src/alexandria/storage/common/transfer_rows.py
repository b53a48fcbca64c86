"""The rows of a workspace as they move between stores (``alexandria export`` / ``import``), and their export.

Rows name each other by natural keys (space/group/view/data source sIds, Dify UUIDs, API key hashes, table ids),
never by integer ids: the target assigns its own and rewrites every foreign key. A chunk's vector travels as its
float32 little-endian bytes (the stored vector, bit for bit). The order is parents before children: the workspace,
spaces, groups, space groups, data sources, views, API keys, group keys, dataset tags and their bindings, metadata
fields, files, folders, tables, table rows, then each document followed by its segments, child chunks and chunks,
and last the live jobs. The file format around these rows is ``alexandria/transfer.py``'s; the import is
``storage/common/transfer.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alexandria.errors import NotFound
from alexandria.storage.chunk_index import ChunkIndex
from alexandria.storage.database import Conn

COUNTS = "#counts"  # the pseudo-row an export stream starts with: {table: rows to come}
Row = dict[str, Any]

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
    _spec("files", "uuid name size extension mime_type data created_at purpose scope_data_source",
          "f.uuid, f.name, f.size, f.extension, f.mime_type, f.data, f.created_at, f.purpose, d.sid",
          "FROM files f LEFT JOIN data_sources d ON d.id = f.scope_data_source_id WHERE f.workspace_id = ?",
          key="f.id", page=16),
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


def export_rows(conn: Conn, index: ChunkIndex, workspace_sid: str) -> Iterator[tuple[str, Row]]:
    """The workspace's rows, in file order, after a ``(COUNTS, {table: n})`` pseudo-row, read on ``conn`` (the caller
    holds its snapshot open until the iterator ends)."""
    found = conn.all("SELECT id, sid, name, created_at FROM workspaces WHERE sid = ?", (workspace_sid,))
    if not found:
        raise NotFound(f"no workspace {workspace_sid!r} in this store", code="workspace_not_found")
    ws_id = int(found[0][0])
    counts = {"workspace": 1}
    for spec in SPECS:
        counts[spec.table] = int(conn.scalar(f"SELECT count(*) {spec.source}", (ws_id,)))
    yield COUNTS, counts
    yield "workspace", {"sid": str(found[0][1]), "name": str(found[0][2]), "created_at": int(found[0][3])}
    for spec in SPECS:
        if spec.table == "documents":
            yield from _documents(conn, index, ws_id)
        elif spec.table not in DEPENDENTS:
            yield from _paged(conn, spec, ws_id)


def _page_sql(spec: _Spec) -> str:
    """The next page of a table's rows after a key (keyset paging: the key first, then the fields)."""
    return f"SELECT {spec.key}, {spec.cols} {spec.source} AND {spec.key} > ? ORDER BY {spec.key} LIMIT ?"


def _paged(conn: Conn, spec: _Spec, ws_id: int) -> Iterator[tuple[str, Row]]:
    if not spec.key:
        for values in conn.all(f"SELECT {spec.cols} {spec.source} ORDER BY {spec.order}", (ws_id,)):
            yield spec.table, _row(spec, values)
        return
    last = -1
    while True:
        page = conn.all(_page_sql(spec), (ws_id, last, spec.page))
        for values in page:
            yield spec.table, _row(spec, values[1:])
        if len(page) < spec.page:
            return
        last = int(page[-1][0])


def _documents(conn: Conn, index: ChunkIndex, ws_id: int) -> Iterator[tuple[str, Row]]:
    """Each document followed by its segments, child chunks and chunks (read for ranges of documents)."""
    spec = SPEC["documents"]
    chunk_count_at = spec.fields.index("chunk_count") + 1
    last = -1
    while True:
        page = conn.all(_page_sql(spec), (ws_id, last, spec.page))
        group: list[Sequence[Any]] = []
        budget = 0
        for values in page:
            if group and budget + int(values[chunk_count_at]) > DOCUMENT_CHUNK_BUDGET:
                yield from _document_group(conn, index, ws_id, group)
                group, budget = [], 0
            group.append(values)
            budget += int(values[chunk_count_at])
        if group:
            yield from _document_group(conn, index, ws_id, group)
        if len(page) < spec.page:
            return
        last = int(page[-1][0])


def _document_group(
    conn: Conn, index: ChunkIndex, ws_id: int, docs: Sequence[Sequence[Any]]
) -> Iterator[tuple[str, Row]]:
    first, last = int(docs[0][0]), int(docs[-1][0])
    deps: dict[int, list[tuple[str, Row]]] = {int(d[0]): [] for d in docs}
    for table in DEPENDENTS:
        spec = SPEC[table]
        cols = spec.cols.format(vector=index.vector_column)
        sql = f"SELECT {cols} {spec.source} AND {spec.key} BETWEEN ? AND ? ORDER BY {spec.order}"
        for values in conn.all(sql, (ws_id, first, last)):
            row = _row(spec, values[1:])
            if table == "chunks":
                stored = index.stored_vector(values[spec.fields.index("vector") + 1])
                row["vector"] = np.asarray(stored, dtype="<f4").tobytes()
            deps[int(values[0])].append((table, row))
    for doc in docs:
        yield "documents", _row(SPEC["documents"], doc[1:])
        yield from deps[int(doc[0])]
