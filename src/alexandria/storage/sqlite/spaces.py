"""Spaces, groups, data source views and folders in the embedded store (a mixin of ``SqliteStore``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from alexandria.domain.models import (
    ApiKey,
    DataSource,
    DataSourceView,
    Folder,
    Group,
    Space,
    SpaceKind,
    ViewKind,
    Workspace,
)
from alexandria.errors import AlreadyExists, NotFound
from alexandria.storage import rows
from alexandria.storage.base import FolderWrite
from alexandria.storage.sqlite.db import SqliteEngine

GLOBAL_GROUP_NAME = "Workspace"
SYSTEM_SPACE_NAME = "Connection Admin"


def ensure_global_group(conn: sqlite3.Connection, workspace_id: int) -> int:
    """The id of the workspace's global group (every key is a member), created if missing."""
    row = conn.execute("SELECT id FROM groups WHERE workspace_id = ? AND kind = 'global'", (workspace_id,)).fetchone()
    if row is not None:
        return int(row[0])
    cur = conn.execute(
        "INSERT INTO groups (sid, workspace_id, name, kind, created_at) VALUES (?, ?, ?, 'global', ?)",
        (rows.new_sid("grp"), workspace_id, GLOBAL_GROUP_NAME, rows.now_ms()),
    )
    return int(cur.lastrowid or 0)


def insert_view(
    conn: sqlite3.Connection,
    workspace_id: int,
    space_id: int,
    data_source_id: int,
    kind: ViewKind,
    parents_in: Sequence[str] | None,
) -> int:
    now = rows.now_ms()
    cur = conn.execute(
        "INSERT INTO data_source_views (sid, workspace_id, space_id, data_source_id, kind, parents_in, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
    )
    return int(cur.lastrowid or 0)


class SqliteSpaces:
    engine: SqliteEngine

    # --- spaces and groups ---------------------------------------------------------------------------------------
    def ensure_system_space(self, workspace: Workspace) -> Space:
        with self.engine.write() as conn:
            row = conn.execute(
                f"SELECT {rows.SPACE_COLS} FROM spaces WHERE workspace_id = ? AND kind = 'system'", (workspace.id,)
            ).fetchone()
            if row is None:
                now = rows.now_ms()
                cur = conn.execute(
                    "INSERT INTO spaces (sid, workspace_id, kind, name, created_at, updated_at) "
                    "VALUES (?, ?, 'system', ?, ?, ?)",
                    (rows.new_sid("vlt"), workspace.id, SYSTEM_SPACE_NAME, now, now),
                )
                row = conn.execute(f"SELECT {rows.SPACE_COLS} FROM spaces WHERE id = ?", (cur.lastrowid,)).fetchone()
        return rows.space(row)

    def create_space(self, workspace_id: int, name: str, group_ids: Sequence[int], open_to_all: bool) -> Space:
        """A regular space attached to ``group_ids`` (and to the global group when ``open_to_all``)."""
        now = rows.now_ms()
        try:
            with self.engine.write() as conn:
                cur = conn.execute(
                    "INSERT INTO spaces (sid, workspace_id, kind, name, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (rows.new_sid("vlt"), workspace_id, SpaceKind.REGULAR.value, name, now, now),
                )
                space_id = int(cur.lastrowid or 0)
                ids = set(group_ids)
                if open_to_all:
                    ids.add(ensure_global_group(conn, workspace_id))
                conn.executemany(
                    "INSERT INTO space_groups (space_id, group_id) VALUES (?, ?)", [(space_id, g) for g in sorted(ids)]
                )
                row = conn.execute(f"SELECT {rows.SPACE_COLS} FROM spaces WHERE id = ?", (space_id,)).fetchone()
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"a space named {name!r} already exists", code="space_name_taken") from exc
        return rows.space(row)

    def create_group(self, workspace_id: int, name: str) -> Group:
        try:
            with self.engine.write() as conn:
                cur = conn.execute(
                    "INSERT INTO groups (sid, workspace_id, name, kind, created_at) VALUES (?, ?, ?, 'regular', ?)",
                    (rows.new_sid("grp"), workspace_id, name, rows.now_ms()),
                )
                row = conn.execute(f"SELECT {rows.GROUP_COLS} FROM groups WHERE id = ?", (cur.lastrowid,)).fetchone()
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"a group named {name!r} already exists", code="group_name_taken") from exc
        return rows.group(row)

    def list_groups(self, workspace_id: int) -> list[Group]:
        with self.engine.write() as conn:
            ensure_global_group(conn, workspace_id)
        cur = self.engine.reader().execute(
            f"SELECT {rows.GROUP_COLS} FROM groups WHERE workspace_id = ? ORDER BY id", (workspace_id,)
        )
        return [rows.group(r) for r in cur]

    def get_group(self, workspace_id: int, sid_or_name: str) -> Group | None:
        row = (
            self.engine.reader()
            .execute(
                f"SELECT {rows.GROUP_COLS} FROM groups WHERE workspace_id = ? AND (sid = ? OR name = ?) "
                "ORDER BY sid = ? DESC LIMIT 1",
                (workspace_id, sid_or_name, sid_or_name, sid_or_name),
            )
            .fetchone()
        )
        return rows.group(row) if row else None

    def add_key_to_group(self, group_id: int, api_key_id: int) -> None:
        with self.engine.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO group_keys (group_id, api_key_id) VALUES (?, ?)", (group_id, api_key_id)
            )

    def remove_key_from_group(self, group_id: int, api_key_id: int) -> bool:
        with self.engine.write() as conn:
            cur = conn.execute("DELETE FROM group_keys WHERE group_id = ? AND api_key_id = ?", (group_id, api_key_id))
        return cur.rowcount > 0

    def set_space_groups(self, space_id: int, group_ids: Sequence[int]) -> None:
        with self.engine.write() as conn:
            conn.execute("DELETE FROM space_groups WHERE space_id = ?", (space_id,))
            conn.executemany(
                "INSERT INTO space_groups (space_id, group_id) VALUES (?, ?)", [(space_id, g) for g in set(group_ids)]
            )
            conn.execute("UPDATE spaces SET updated_at = ? WHERE id = ?", (rows.now_ms(), space_id))

    def key_group_sids(self, workspace_id: int, api_key_id: int | None) -> list[str]:
        """Group sIds of a key plus the global group; every group of the workspace when ``api_key_id`` is None."""
        if api_key_id is None:
            cur = self.engine.reader().execute("SELECT sid FROM groups WHERE workspace_id = ?", (workspace_id,))
        else:
            cur = self.engine.reader().execute(
                "SELECT g.sid FROM groups g WHERE g.workspace_id = ? AND (g.kind = 'global' OR g.id IN "
                "(SELECT group_id FROM group_keys WHERE api_key_id = ?))",
                (workspace_id, api_key_id),
            )
        return [str(r[0]) for r in cur]

    def list_api_keys(self, workspace_id: int) -> list[ApiKey]:
        cur = self.engine.reader().execute(
            f"SELECT {rows.API_KEY_COLS} FROM api_keys WHERE workspace_id = ? ORDER BY id", (workspace_id,)
        )
        return [rows.api_key(r) for r in cur]

    def disable_api_key(self, workspace_id: int, api_key_id: int) -> bool:
        with self.engine.write() as conn:
            cur = conn.execute(
                "UPDATE api_keys SET disabled_at = ? WHERE id = ? AND workspace_id = ? AND disabled_at IS NULL",
                (rows.now_ms(), api_key_id, workspace_id),
            )
        return cur.rowcount > 0

    # --- data source views ---------------------------------------------------------------------------------------
    def create_view(self, ds: DataSource, space_id: int, parents_in: Sequence[str]) -> DataSourceView:
        """A custom view of ``ds`` in space ``space_id`` exposing the nodes under ``parents_in``."""
        with self.engine.write() as conn:
            view_id = insert_view(conn, ds.workspace_id, space_id, ds.id, ViewKind.CUSTOM, parents_in)
            row = conn.execute(f"SELECT {rows.VIEW_COLS} FROM data_source_views WHERE id = ?", (view_id,)).fetchone()
        return rows.view(row)

    def list_views(self, workspace_id: int, space_id: int | None = None) -> list[DataSourceView]:
        sql = f"SELECT {rows.VIEW_COLS} FROM data_source_views WHERE workspace_id = ?"
        params: list[object] = [workspace_id]
        if space_id is not None:
            sql += " AND space_id = ?"
            params.append(space_id)
        return [rows.view(r) for r in self.engine.reader().execute(sql + " ORDER BY id", params)]

    def get_view(self, workspace_id: int, sid: str) -> DataSourceView | None:
        row = (
            self.engine.reader()
            .execute(
                f"SELECT {rows.VIEW_COLS} FROM data_source_views WHERE workspace_id = ? AND sid = ?",
                (workspace_id, sid),
            )
            .fetchone()
        )
        return rows.view(row) if row else None

    def update_view_parents(self, view_id: int, parents_in: Sequence[str]) -> DataSourceView:
        with self.engine.write() as conn:
            conn.execute(
                "UPDATE data_source_views SET parents_in = ?, updated_at = ? WHERE id = ? AND kind = 'custom'",
                (json.dumps(list(parents_in)), rows.now_ms(), view_id),
            )
            row = conn.execute(f"SELECT {rows.VIEW_COLS} FROM data_source_views WHERE id = ?", (view_id,)).fetchone()
        if row is None:
            raise NotFound("The data source view was not found.", code="data_source_view_not_found")
        return rows.view(row)

    def delete_view(self, view_id: int) -> bool:
        with self.engine.write() as conn:
            cur = conn.execute("DELETE FROM data_source_views WHERE id = ? AND kind = 'custom'", (view_id,))
        return cur.rowcount > 0

    def get_data_source_by_id(self, data_source_id: int) -> DataSource | None:
        row = (
            self.engine.reader()
            .execute(f"SELECT {rows.DATA_SOURCE_COLS} FROM data_sources WHERE id = ?", (data_source_id,))
            .fetchone()
        )
        return rows.data_source(row) if row else None

    def existing_node_ids(self, ds: DataSource, node_ids: Sequence[str]) -> set[str]:
        """Those of ``node_ids`` that are documents, folders or tables of ``ds``."""
        wanted = json.dumps(list(node_ids))
        sql = (
            "SELECT document_id FROM documents WHERE data_source_id = ? AND document_id IN "
            "(SELECT value FROM json_each(?)) UNION SELECT folder_id FROM folders WHERE data_source_id = ? AND "
            "folder_id IN (SELECT value FROM json_each(?))"
        )
        params: list[object] = [ds.id, wanted, ds.id, wanted]
        conn = self.engine.reader()
        has_tables = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tables'").fetchone()
        if has_tables:
            sql += " UNION SELECT table_id FROM tables WHERE data_source_id = ? AND table_id IN " + (
                "(SELECT value FROM json_each(?))"
            )
            params += [ds.id, wanted]
        return {str(r[0]) for r in conn.execute(sql, params)}

    # --- folders -------------------------------------------------------------------------------------------------
    def upsert_folder(self, ds: DataSource, folder: FolderWrite) -> Folder:
        now = rows.now_ms()
        with self.engine.write() as conn:
            conn.execute(
                "INSERT INTO folders (data_source_id, folder_id, title, parents, parent_id, mime_type, source_url, "
                "provider_visibility, timestamp, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (data_source_id, folder_id) DO UPDATE SET title = excluded.title, "
                "parents = excluded.parents, parent_id = excluded.parent_id, mime_type = excluded.mime_type, "
                "source_url = excluded.source_url, provider_visibility = excluded.provider_visibility, "
                "timestamp = excluded.timestamp, updated = excluded.updated",
                (
                    ds.id,
                    folder.folder_id,
                    folder.title,
                    json.dumps(list(folder.parents)),
                    folder.parent_id,
                    folder.mime_type,
                    folder.source_url,
                    folder.provider_visibility,
                    folder.timestamp,
                    now,
                    now,
                ),
            )
            row = conn.execute(
                f"SELECT {rows.FOLDER_COLS} FROM folders WHERE data_source_id = ? AND folder_id = ?",
                (ds.id, folder.folder_id),
            ).fetchone()
        return rows.folder(row)

    def get_folder(self, ds: DataSource, folder_id: str) -> Folder | None:
        row = (
            self.engine.reader()
            .execute(
                f"SELECT {rows.FOLDER_COLS} FROM folders WHERE data_source_id = ? AND folder_id = ?",
                (ds.id, folder_id),
            )
            .fetchone()
        )
        return rows.folder(row) if row else None

    def list_folders(self, ds: DataSource) -> list[Folder]:
        cur = self.engine.reader().execute(
            f"SELECT {rows.FOLDER_COLS} FROM folders WHERE data_source_id = ? ORDER BY folder_id", (ds.id,)
        )
        return [rows.folder(r) for r in cur]

    def delete_folder(self, ds: DataSource, folder_id: str) -> bool:
        with self.engine.write() as conn:
            cur = conn.execute("DELETE FROM folders WHERE data_source_id = ? AND folder_id = ?", (ds.id, folder_id))
        return cur.rowcount > 0
