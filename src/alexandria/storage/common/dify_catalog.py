"""Dify's dataset-level records, written once for both engines over the facade: datasets' settings and counts,
metadata fields (and their keys in documents' ``doc_metadata``), knowledge tags, uploaded files and the
installation's secrets. A name collision raises :class:`~alexandria.storage.database.DuplicateKey`; the service that
knows what collided words the message."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from alexandria.domain.dify import DatasetCounts, DatasetTag, MetadataField, UploadedFile
from alexandria.domain.models import DataSource
from alexandria.storage import rows
from alexandria.storage.chunk_index import ChunkIndex
from alexandria.storage.common.dify_documents import display_sql
from alexandria.storage.common.document_rows import drop_files_of
from alexandria.storage.database import Conn, Database, Row
from alexandria.storage.errors import missing_row

FIELD_COLS = "id, uuid, data_source_id, name, type, created_at"
FILE_COLS = "id, uuid, workspace_id, name, size, extension, mime_type, created_at"
TAG_COLS = (
    "t.id, t.uuid, t.workspace_id, t.name, "
    "(SELECT count(*) FROM dataset_tag_bindings b WHERE b.tag_pk = t.id), t.created_at"
)


def _field(r: Row) -> MetadataField:
    return MetadataField(int(r[0]), str(r[1]), int(r[2]), str(r[3]), str(r[4]), int(r[5]))


def _file(r: Row) -> UploadedFile:
    return UploadedFile(int(r[0]), str(r[1]), int(r[2]), str(r[3]), int(r[4]), str(r[5]), str(r[6]), int(r[7]))


def _tag(r: Row) -> DatasetTag:
    return DatasetTag(int(r[0]), str(r[1]), int(r[2]), str(r[3]), int(r[4]), int(r[5]))


def _tags(conn: Conn, where: str, params: Sequence[object]) -> list[DatasetTag]:
    return [_tag(r) for r in conn.all(f"SELECT {TAG_COLS} FROM dataset_tags t WHERE {where} ORDER BY t.id", params)]


def _tag_by_pk(conn: Conn, pk: int) -> DatasetTag:
    return _tag(missing_row(conn.one(f"SELECT {TAG_COLS} FROM dataset_tags t WHERE t.id = ?", (pk,))))


def _rekey_metadata(conn: Conn, ds: DataSource, name: str, new_name: str | None) -> None:
    """Rename (or, with ``new_name`` None, remove) the key ``name`` in the ``doc_metadata`` of every document of
    ``ds`` holding it (their rows locked, so concurrent writers of the values serialise)."""
    found = conn.all(
        f"SELECT id, doc_metadata FROM documents WHERE data_source_id = ? AND "
        f"{conn.dialect.json_has_key('doc_metadata', '?')}{conn.dialect.for_update}",
        (ds.id, name),
    )
    for pk, stored in found:
        values = dict(rows.js(stored, {}))
        value = values.pop(name, None)
        if new_name is not None:
            values[new_name] = value
        conn.execute("UPDATE documents SET doc_metadata = ? WHERE id = ?", (json.dumps(values), pk))


class DifyCatalogRows:
    """Dify's datasets' settings, metadata fields, tags, files and secrets of :class:`SqliteStore` and
    :class:`PostgresStore`."""

    db: Database
    index: ChunkIndex

    # --- datasets ------------------------------------------------------------------------------------------------
    def get_data_source_by_uuid(self, workspace_id: int, uuid: str) -> DataSource | None:
        with self.db.read() as conn:
            row = conn.one(
                f"SELECT {rows.DATA_SOURCE_COLS} FROM data_sources WHERE workspace_id = ? AND uuid = ?",
                (workspace_id, uuid),
            )
        return rows.data_source(row) if row else None

    def update_data_source(
        self, ds: DataSource, name: str, description: str | None, dify: Mapping[str, Any]
    ) -> DataSource:
        with self.db.write() as conn:
            row = conn.one(
                "UPDATE data_sources SET name = ?, description = ?, dify = ?, updated_at = ? WHERE id = ? "
                f"RETURNING {rows.DATA_SOURCE_COLS}",
                (name, description, json.dumps(dict(dify)), rows.now_ms(), ds.id),
            )
        return rows.data_source(missing_row(row))

    def delete_data_source(self, ds: DataSource) -> bool:
        """Delete a data source with everything of it: documents, chunks and their indexes, files, jobs."""
        with self.index.dropping(ds) as conn:
            drop_files_of(conn, "data_source_id = ?", (ds.id,))
            if int(conn.execute("DELETE FROM data_sources WHERE id = ?", (ds.id,)).rowcount) == 0:
                return False
            conn.execute("DELETE FROM jobs WHERE data_source_id = ?", (ds.id,))
        return True

    def data_source_counts(self, data_source_ids: Sequence[int]) -> dict[int, DatasetCounts]:
        """Per data source: its documents, their words (the processing record's count, else the text's size) and
        the available ones."""
        with self.db.read() as conn:
            available, params = display_sql(conn.dialect, "available")
            found = conn.all(
                "SELECT data_source_id, count(*), "
                f"coalesce(sum(coalesce({conn.dialect.json_number('dify', 'word_count')}, text_size)), 0), "
                f"count(*) FILTER (WHERE {available}) FROM documents WHERE {conn.dialect.any_of('data_source_id')} "
                "GROUP BY data_source_id",
                (*params, conn.dialect.seq(data_source_ids)),
            )
        out = {i: DatasetCounts(0, 0, 0) for i in data_source_ids}
        for r in found:
            out[int(r[0])] = DatasetCounts(int(r[1]), int(r[2]), int(r[3] or 0))
        return out

    # --- metadata fields -----------------------------------------------------------------------------------------
    def create_metadata_field(self, ds: DataSource, name: str, type_: str) -> MetadataField:
        with self.db.write() as conn:
            row = conn.one(
                f"INSERT INTO metadata_fields (uuid, data_source_id, name, type, created_at) VALUES (?, ?, ?, ?, ?) "
                f"RETURNING {FIELD_COLS}",
                (rows.new_uuid(), ds.id, name, type_, rows.now_ms()),
            )
        return _field(missing_row(row))

    def list_metadata_fields(self, ds: DataSource) -> list[tuple[MetadataField, int]]:
        """Each field with the number of documents holding a value for it (its key in their ``doc_metadata``)."""
        with self.db.read() as conn:
            found = conn.all(
                "SELECT f.id, f.uuid, f.data_source_id, f.name, f.type, f.created_at, "
                "(SELECT count(*) FROM documents d WHERE d.data_source_id = f.data_source_id "
                f"AND {conn.dialect.json_has_key('d.doc_metadata', 'f.name')}) "
                "FROM metadata_fields f WHERE f.data_source_id = ? ORDER BY f.id",
                (ds.id,),
            )
        return [(_field(r), int(r[6])) for r in found]

    def rename_metadata_field(self, ds: DataSource, field: MetadataField, name: str) -> MetadataField:
        """Rename a field and the key of its values in every document of the data source."""
        with self.db.write() as conn:
            conn.execute("UPDATE metadata_fields SET name = ? WHERE id = ?", (name, field.pk))
            _rekey_metadata(conn, ds, field.name, name)
        return MetadataField(field.pk, field.uuid, field.data_source_id, name, field.type, field.created_at)

    def delete_metadata_field(self, ds: DataSource, field: MetadataField) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM metadata_fields WHERE id = ?", (field.pk,))
            _rekey_metadata(conn, ds, field.name, None)

    # --- tags ----------------------------------------------------------------------------------------------------
    def create_tag(self, workspace_id: int, name: str) -> DatasetTag:
        with self.db.write() as conn:
            pk = conn.returning_id(
                "INSERT INTO dataset_tags (uuid, workspace_id, name, created_at) VALUES (?, ?, ?, ?) RETURNING id",
                (rows.new_uuid(), workspace_id, name, rows.now_ms()),
            )
            return _tag_by_pk(conn, pk)

    def list_tags(self, workspace_id: int) -> list[DatasetTag]:
        with self.db.read() as conn:
            return _tags(conn, "t.workspace_id = ?", (workspace_id,))

    def get_tag(self, workspace_id: int, uuid: str) -> DatasetTag | None:
        with self.db.read() as conn:
            found = _tags(conn, "t.workspace_id = ? AND t.uuid = ?", (workspace_id, uuid))
        return found[0] if found else None

    def rename_tag(self, tag: DatasetTag, name: str) -> DatasetTag:
        with self.db.write() as conn:
            conn.execute("UPDATE dataset_tags SET name = ? WHERE id = ?", (name, tag.pk))
            return _tag_by_pk(conn, tag.pk)

    def delete_tag(self, tag: DatasetTag) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM dataset_tags WHERE id = ?", (tag.pk,))

    def bind_tags(self, data_source_id: int, tag_pks: Sequence[int]) -> None:
        now = rows.now_ms()
        with self.db.write() as conn:
            conn.executemany(
                "INSERT INTO dataset_tag_bindings (tag_pk, data_source_id, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [(pk, data_source_id, now) for pk in dict.fromkeys(tag_pks)],
            )

    def unbind_tags(self, data_source_id: int, tag_pks: Sequence[int]) -> None:
        if not tag_pks:
            return
        with self.db.write() as conn:
            conn.execute(
                f"DELETE FROM dataset_tag_bindings WHERE {conn.dialect.any_of('tag_pk')} AND data_source_id = ?",
                (conn.dialect.seq(tag_pks), data_source_id),
            )

    def tags_of_data_sources(self, data_source_ids: Sequence[int]) -> dict[int, list[DatasetTag]]:
        with self.db.read() as conn:
            found = conn.all(
                f"SELECT {TAG_COLS}, b2.data_source_id FROM dataset_tags t "
                "JOIN dataset_tag_bindings b2 ON b2.tag_pk = t.id "
                f"WHERE {conn.dialect.any_of('b2.data_source_id')} ORDER BY t.id",
                (conn.dialect.seq(data_source_ids),),
            )
        out: dict[int, list[DatasetTag]] = {i: [] for i in data_source_ids}
        for r in found:
            out[int(r[6])].append(_tag(r))
        return out

    # --- files and secrets ---------------------------------------------------------------------------------------
    def save_file(self, workspace_id: int, name: str, extension: str, mime_type: str, data: bytes) -> UploadedFile:
        with self.db.write() as conn:
            row = conn.one(
                "INSERT INTO files (uuid, workspace_id, name, size, extension, mime_type, data, created_at) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {FILE_COLS}",
                (rows.new_uuid(), workspace_id, name, len(data), extension, mime_type, bytes(data), rows.now_ms()),
            )
        return _file(missing_row(row))

    def get_file(self, workspace_id: int, uuid: str) -> tuple[UploadedFile, bytes] | None:
        with self.db.read() as conn:
            row = conn.one(
                f"SELECT {FILE_COLS}, data FROM files WHERE workspace_id = ? AND uuid = ?", (workspace_id, uuid)
            )
        return None if row is None else (_file(row), bytes(row[8]))

    def file_data(self, uuid: str) -> bytes | None:
        with self.db.read() as conn:
            row = conn.one("SELECT data FROM files WHERE uuid = ?", (uuid,))
        return None if row is None else bytes(row[0])

    def instance_secret(self, name: str) -> str:
        """A random secret of this installation, made on first use (every process of it sees the same one)."""
        with self.db.read() as conn:
            found = conn.scalar("SELECT value FROM instance_secrets WHERE name = ?", (name,))
        if found is not None:
            return str(found)
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO instance_secrets (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (name, secrets.token_hex(32)),
            )
            return str(missing_row(conn.scalar("SELECT value FROM instance_secrets WHERE name = ?", (name,))))
