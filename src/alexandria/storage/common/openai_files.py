"""The Files API's rows, written once for both engines over the facade: files with a purpose (the ``files`` table
Dify's uploads also use; those have no purpose and are not listed here), listed by cursor, deleted on request."""

from __future__ import annotations

from collections.abc import Sequence

from alexandria.domain.openai import StoredFile
from alexandria.storage import rows
from alexandria.storage.database import Database, Row
from alexandria.storage.errors import missing_row

COLS = "id, uuid, workspace_id, name, size, extension, mime_type, created_at, purpose, scope_data_source_id"


def _file(r: Row) -> StoredFile:
    scope = None if r[9] is None else int(r[9])
    return StoredFile(int(r[0]), str(r[1]), int(r[2]), str(r[3]), int(r[4]), str(r[5]), str(r[6]), int(r[7]),
                      str(r[8]), scope)  # fmt: skip


class OpenAIFileRows:
    db: Database

    def save_openai_file(
        self,
        workspace_id: int,
        name: str,
        extension: str,
        mime_type: str,
        data: bytes,
        purpose: str,
        scope_data_source_id: int | None,
    ) -> StoredFile:
        values = (rows.new_uuid(), workspace_id, name, len(data), extension, mime_type, bytes(data), rows.now_ms(),
                  purpose, scope_data_source_id)  # fmt: skip
        with self.db.write() as conn:
            row = conn.one(
                "INSERT INTO files (uuid, workspace_id, name, size, extension, mime_type, data, created_at, purpose, "
                f"scope_data_source_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {COLS}",
                values,
            )
        return _file(missing_row(row))

    def get_openai_file(self, workspace_id: int, uuid: str) -> StoredFile | None:
        with self.db.read() as conn:
            row = conn.one(
                f"SELECT {COLS} FROM files WHERE workspace_id = ? AND uuid = ? AND purpose IS NOT NULL",
                (workspace_id, uuid),
            )
        return None if row is None else _file(row)

    def list_openai_files(
        self, workspace_id: int, purpose: str | None, scope_data_source_id: int | None
    ) -> list[StoredFile]:
        """The workspace's files (of one purpose; confined to one data source when ``scope_data_source_id``),
        oldest first."""
        sql = f"SELECT {COLS} FROM files WHERE workspace_id = ? AND purpose IS NOT NULL"
        params: list[object] = [workspace_id]
        if purpose is not None:
            sql += " AND purpose = ?"
            params.append(purpose)
        if scope_data_source_id is not None:
            sql += " AND scope_data_source_id = ?"
            params.append(scope_data_source_id)
        with self.db.read() as conn:
            found = conn.all(sql + " ORDER BY created_at, id", params)
        return [_file(r) for r in found]

    def data_sources_holding(self, workspace_id: int, uuids: Sequence[str]) -> dict[str, list[int]]:
        """For each file uuid, the data sources of the workspace holding it as a document (vector stores)."""
        out: dict[str, list[int]] = {u: [] for u in uuids}
        if not uuids:
            return out
        with self.db.read() as conn:
            linked = conn.dialect.json_flag("d.dify", "linked_file")
            found = conn.all(
                "SELECT d.document_id, d.data_source_id FROM documents d "
                "JOIN data_sources s ON s.id = d.data_source_id WHERE s.workspace_id = ? AND d.dify IS NOT NULL "
                f"AND {linked} AND {conn.dialect.any_of('d.document_id')} ORDER BY d.data_source_id",
                (workspace_id, conn.dialect.seq(uuids)),
            )
        for r in found:
            out[str(r[0])].append(int(r[1]))
        return out

    def delete_openai_file(self, workspace_id: int, uuid: str) -> bool:
        with self.db.write() as conn:
            cur = conn.execute(
                "DELETE FROM files WHERE workspace_id = ? AND uuid = ? AND purpose IS NOT NULL", (workspace_id, uuid)
            )
            return bool(cur.rowcount)
