"""Workspaces, their built-in spaces, data sources and API keys, written once over the facade (a mixin of both
stores). A taken unique name raises :class:`~alexandria.storage.database.DuplicateKey`; the services word it."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from alexandria.domain.models import (
    GLOBAL_SPACE_NAME,
    SYSTEM_SPACE_NAME,
    ApiKey,
    DataSource,
    Role,
    Space,
    SpaceKind,
    ViewKind,
    Workspace,
)
from alexandria.storage import rows
from alexandria.storage.chunk_index import ChunkIndex
from alexandria.storage.common.spaces import ensure_global_group, insert_view, spaces_where
from alexandria.storage.database import Conn, Database
from alexandria.storage.errors import missing_row


def data_sources_where(conn: Conn, where: str, params: Sequence[object], tail: str = "ORDER BY id") -> list[DataSource]:
    found = conn.all(f"SELECT {rows.DATA_SOURCE_COLS} FROM data_sources WHERE {where} {tail}", params)
    return [rows.data_source(r) for r in found]


class Catalog:
    """Workspaces, spaces, data sources and keys of a store."""

    db: Database
    index: ChunkIndex

    # --- workspaces ----------------------------------------------------------------------------------------------
    def create_workspace(self, sid: str, name: str) -> Workspace:
        with self.db.write() as conn:
            row = conn.one(
                f"INSERT INTO workspaces (sid, name, created_at) VALUES (?, ?, ?) RETURNING {rows.WORKSPACE_COLS}",
                (sid, name, rows.now_ms()),
            )
        return rows.workspace(missing_row(row))

    def get_workspace(self, sid: str) -> Workspace | None:
        with self.db.read() as conn:
            row = conn.one(f"SELECT {rows.WORKSPACE_COLS} FROM workspaces WHERE sid = ?", (sid,))
        return rows.workspace(row) if row else None

    def get_workspace_by_id(self, workspace_id: int) -> Workspace | None:
        with self.db.read() as conn:
            row = conn.one(f"SELECT {rows.WORKSPACE_COLS} FROM workspaces WHERE id = ?", (workspace_id,))
        return rows.workspace(row) if row else None

    # --- spaces --------------------------------------------------------------------------------------------------
    def _ensure_space(self, workspace: Workspace, kind: SpaceKind, name: str, with_global_group: bool) -> Space:
        """The workspace's one space of ``kind`` (global or system), created if missing."""
        where = f"workspace_id = ? AND kind = '{kind.value}'"  # an enum's value, never input
        with self.db.write() as conn:
            found = spaces_where(conn, where, (workspace.id,))
            if found:
                return found[0]
            now = rows.now_ms()
            space_id = conn.scalar(
                "INSERT INTO spaces (sid, workspace_id, kind, name, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                f"ON CONFLICT (workspace_id) WHERE kind = '{kind.value}' DO NOTHING RETURNING id",
                (rows.new_sid("vlt"), workspace.id, kind.value, name, now, now),
            )
            if space_id is not None and with_global_group:
                conn.execute(
                    "INSERT INTO space_groups (space_id, group_id) VALUES (?, ?)",
                    (space_id, ensure_global_group(conn, workspace.id)),
                )
            return spaces_where(conn, where, (workspace.id,))[0]

    def ensure_global_space(self, workspace: Workspace) -> Space:
        return self._ensure_space(workspace, SpaceKind.GLOBAL, GLOBAL_SPACE_NAME, with_global_group=True)

    def ensure_system_space(self, workspace: Workspace) -> Space:
        return self._ensure_space(workspace, SpaceKind.SYSTEM, SYSTEM_SPACE_NAME, with_global_group=False)

    def _spaces(self, where: str, params: Sequence[object]) -> list[Space]:
        with self.db.read() as conn:
            return spaces_where(conn, where, params)

    def global_space(self, workspace_id: int) -> Space | None:
        found = self._spaces("workspace_id = ? AND kind = 'global'", (workspace_id,))
        return found[0] if found else None

    def list_spaces(self, workspace_id: int) -> list[Space]:
        return self._spaces("workspace_id = ?", (workspace_id,))

    def get_space(self, workspace_id: int, sid: str) -> Space | None:
        found = self._spaces("workspace_id = ? AND sid = ?", (workspace_id, sid))
        return found[0] if found else None

    def get_space_by_id(self, space_id: int) -> Space | None:
        found = self._spaces("id = ?", (space_id,))
        return found[0] if found else None

    # --- data sources --------------------------------------------------------------------------------------------
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
        """A data source with its default view and its index structures (one transaction)."""
        now = rows.now_ms()
        with self.db.write() as conn:
            ds_id = conn.returning_id(
                "INSERT INTO data_sources (sid, core_id, workspace_id, space_id, name, description, embedder, dim, "
                "chunk_size, created_at, connector_provider, uuid, dify, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (rows.new_sid("dts"), secrets.token_hex(32), workspace_id, space_id, name, description, embedder,
                 dim, chunk_size, now, connector_provider, rows.new_uuid(), json.dumps(dict(dify or {})), now),
            )  # fmt: skip
            insert_view(conn, workspace_id, space_id, ds_id, ViewKind.DEFAULT, None)
            ds = data_sources_where(conn, "id = ?", (ds_id,))[0]
            self.index.create(conn, ds)
        return ds

    def _data_sources(self, where: str, params: Sequence[object], tail: str = "ORDER BY id") -> list[DataSource]:
        with self.db.read() as conn:
            return data_sources_where(conn, where, params, tail)

    def list_data_sources(self, workspace_id: int, space_id: int | None) -> list[DataSource]:
        if space_id is None:
            return self._data_sources("workspace_id = ?", (workspace_id,))
        return self._data_sources("workspace_id = ? AND space_id = ?", (workspace_id, space_id))

    def get_data_source(self, workspace_id: int, sid_or_name: str) -> DataSource | None:
        """By sId or name (an sId match first)."""
        found = self._data_sources(
            "workspace_id = ? AND (sid = ? OR name = ?)",
            (workspace_id, sid_or_name, sid_or_name, sid_or_name),
            tail="ORDER BY (sid = ?) DESC LIMIT 1",
        )
        return found[0] if found else None

    def get_data_source_by_id(self, data_source_id: int) -> DataSource | None:
        found = self._data_sources("id = ?", (data_source_id,))
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
        with self.db.write() as conn:
            row = conn.one(
                "INSERT INTO api_keys (workspace_id, name, role, key_hash, prefix, created_at, data_source_id) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {rows.API_KEY_COLS}",
                (workspace_id, name, role.value, key_hash, prefix, rows.now_ms(), data_source_id),
            )
        return rows.api_key(missing_row(row))

    def get_api_key(self, key_hash: str) -> ApiKey | None:
        with self.db.read() as conn:
            row = conn.one(f"SELECT {rows.API_KEY_COLS} FROM api_keys WHERE key_hash = ?", (key_hash,))
        return rows.api_key(row) if row else None
