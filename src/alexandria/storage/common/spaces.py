"""Spaces, groups, data source views, folders and the key listing, written once over the facade (a mixin of both
stores). Who may do what, and every user-facing message, are the services' (``services/spaces.py``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from alexandria.domain.models import (
    GLOBAL_GROUP_NAME,
    ApiKey,
    DataSource,
    DataSourceView,
    Folder,
    Group,
    Space,
    SpaceKind,
    ViewKind,
)
from alexandria.storage import rows
from alexandria.storage.base import FolderWrite
from alexandria.storage.database import Conn, Database
from alexandria.storage.errors import missing_row


def space_cols(conn: Conn) -> str:
    """A space's columns, with the sIds of its groups and whether the global group is one of them."""
    return (
        "id, sid, workspace_id, kind, name, created_at, updated_at, "
        f"(SELECT coalesce({conn.dialect.json_agg}(g.sid), '[]') FROM space_groups sg JOIN groups g "
        "ON g.id = sg.group_id WHERE sg.space_id = spaces.id), "
        "(SELECT count(*) FROM space_groups sg JOIN groups g ON g.id = sg.group_id "
        "WHERE sg.space_id = spaces.id AND g.kind = 'global')"
    )


def spaces_where(conn: Conn, where: str, params: Sequence[object]) -> list[Space]:
    found = conn.all(f"SELECT {space_cols(conn)} FROM spaces WHERE {where} ORDER BY id", params)
    return [rows.space(r) for r in found]


def ensure_global_group(conn: Conn, workspace_id: int) -> int:
    """The id of the workspace's global group (every key is a member), created if missing."""
    sql = "SELECT id FROM groups WHERE workspace_id = ? AND kind = 'global'"
    found = conn.scalar(sql, (workspace_id,))
    if found is None:
        found = conn.scalar(
            "INSERT INTO groups (sid, workspace_id, name, kind, created_at) VALUES (?, ?, ?, 'global', ?) "
            "ON CONFLICT (workspace_id) WHERE kind = 'global' DO NOTHING RETURNING id",
            (rows.new_sid("grp"), workspace_id, GLOBAL_GROUP_NAME, rows.now_ms()),
        )
    if found is None:  # created meanwhile by another writer
        found = missing_row(conn.scalar(sql, (workspace_id,)))
    return int(found)


def insert_view(
    conn: Conn, workspace_id: int, space_id: int, data_source_id: int, kind: ViewKind, parents_in: Sequence[str] | None
) -> int:
    now = rows.now_ms()
    return conn.returning_id(
        "INSERT INTO data_source_views (sid, workspace_id, space_id, data_source_id, kind, parents_in, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (rows.new_sid("dsv"), workspace_id, space_id, data_source_id, kind.value,
         None if parents_in is None else json.dumps(list(parents_in)), now, now),
    )  # fmt: skip


def _view(conn: Conn, view_id: int) -> DataSourceView | None:
    row = conn.one(f"SELECT {rows.VIEW_COLS} FROM data_source_views WHERE id = ?", (view_id,))
    return rows.view(row) if row else None


class Spaces:
    """Spaces, groups, views, folders and keys of a store."""

    db: Database

    # --- spaces and groups ---------------------------------------------------------------------------------------
    def create_space(self, workspace_id: int, name: str, group_ids: Sequence[int], open_to_all: bool) -> Space:
        """A regular space attached to ``group_ids`` (and to the global group when ``open_to_all``); a taken name
        raises :class:`~alexandria.storage.database.DuplicateKey`."""
        now = rows.now_ms()
        with self.db.write() as conn:
            space_id = conn.returning_id(
                "INSERT INTO spaces (sid, workspace_id, kind, name, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (rows.new_sid("vlt"), workspace_id, SpaceKind.REGULAR.value, name, now, now),
            )
            ids = set(group_ids)
            if open_to_all:
                ids.add(ensure_global_group(conn, workspace_id))
            conn.executemany(
                "INSERT INTO space_groups (space_id, group_id) VALUES (?, ?)", [(space_id, g) for g in sorted(ids)]
            )
            return spaces_where(conn, "id = ?", (space_id,))[0]

    def create_group(self, workspace_id: int, name: str) -> Group:
        """A regular group; a taken name raises :class:`~alexandria.storage.database.DuplicateKey`."""
        with self.db.write() as conn:
            row = conn.one(
                "INSERT INTO groups (sid, workspace_id, name, kind, created_at) "
                f"VALUES (?, ?, ?, 'regular', ?) RETURNING {rows.GROUP_COLS}",
                (rows.new_sid("grp"), workspace_id, name, rows.now_ms()),
            )
        return rows.group(missing_row(row))

    def list_groups(self, workspace_id: int) -> list[Group]:
        with self.db.write() as conn:
            ensure_global_group(conn, workspace_id)
        with self.db.read() as conn:
            found = conn.all(
                f"SELECT {rows.GROUP_COLS} FROM groups WHERE workspace_id = ? ORDER BY id", (workspace_id,)
            )
        return [rows.group(r) for r in found]

    def get_group(self, workspace_id: int, sid_or_name: str) -> Group | None:
        with self.db.read() as conn:
            row = conn.one(
                f"SELECT {rows.GROUP_COLS} FROM groups WHERE workspace_id = ? AND (sid = ? OR name = ?) "
                "ORDER BY (sid = ?) DESC LIMIT 1",
                (workspace_id, sid_or_name, sid_or_name, sid_or_name),
            )
        return rows.group(row) if row else None

    def add_key_to_group(self, group_id: int, api_key_id: int) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO group_keys (group_id, api_key_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (group_id, api_key_id),
            )

    def remove_key_from_group(self, group_id: int, api_key_id: int) -> bool:
        with self.db.write() as conn:
            cur = conn.execute("DELETE FROM group_keys WHERE group_id = ? AND api_key_id = ?", (group_id, api_key_id))
            return int(cur.rowcount) > 0

    def set_space_groups(self, space_id: int, group_ids: Sequence[int]) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM space_groups WHERE space_id = ?", (space_id,))
            conn.executemany(
                "INSERT INTO space_groups (space_id, group_id) VALUES (?, ?)",
                [(space_id, g) for g in sorted(set(group_ids))],
            )
            conn.execute("UPDATE spaces SET updated_at = ? WHERE id = ?", (rows.now_ms(), space_id))

    def key_group_sids(self, workspace_id: int, api_key_id: int | None) -> list[str]:
        """Group sIds of a key plus the global group; every group of the workspace when ``api_key_id`` is None."""
        with self.db.read() as conn:
            if api_key_id is None:
                found = conn.all("SELECT sid FROM groups WHERE workspace_id = ? ORDER BY id", (workspace_id,))
            else:
                found = conn.all(
                    "SELECT g.sid FROM groups g WHERE g.workspace_id = ? AND (g.kind = 'global' OR g.id IN "
                    "(SELECT group_id FROM group_keys WHERE api_key_id = ?)) ORDER BY g.id",
                    (workspace_id, api_key_id),
                )
        return [str(r[0]) for r in found]

    def list_api_keys(self, workspace_id: int) -> list[ApiKey]:
        with self.db.read() as conn:
            found = conn.all(
                f"SELECT {rows.API_KEY_COLS} FROM api_keys WHERE workspace_id = ? ORDER BY id", (workspace_id,)
            )
        return [rows.api_key(r) for r in found]

    def disable_api_key(self, workspace_id: int, api_key_id: int) -> bool:
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE api_keys SET disabled_at = ? WHERE id = ? AND workspace_id = ? AND disabled_at IS NULL",
                (rows.now_ms(), api_key_id, workspace_id),
            )
            return int(cur.rowcount) > 0

    # --- data source views ---------------------------------------------------------------------------------------
    def create_view(self, ds: DataSource, space_id: int, parents_in: Sequence[str]) -> DataSourceView:
        """A custom view of ``ds`` in space ``space_id`` exposing the nodes under ``parents_in``."""
        with self.db.write() as conn:
            view_id = insert_view(conn, ds.workspace_id, space_id, ds.id, ViewKind.CUSTOM, parents_in)
            return missing_row(_view(conn, view_id))

    def list_views(self, workspace_id: int, space_id: int | None = None) -> list[DataSourceView]:
        where = "workspace_id = ?"
        params: list[object] = [workspace_id]
        if space_id is not None:
            where += " AND space_id = ?"
            params.append(space_id)
        with self.db.read() as conn:
            found = conn.all(f"SELECT {rows.VIEW_COLS} FROM data_source_views WHERE {where} ORDER BY id", params)
        return [rows.view(r) for r in found]

    def get_view(self, workspace_id: int, sid: str) -> DataSourceView | None:
        with self.db.read() as conn:
            row = conn.one(
                f"SELECT {rows.VIEW_COLS} FROM data_source_views WHERE workspace_id = ? AND sid = ?",
                (workspace_id, sid),
            )
        return rows.view(row) if row else None

    def update_view_parents(self, view_id: int, parents_in: Sequence[str]) -> DataSourceView | None:
        """The custom view with its new parents; None if there is no such view."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE data_source_views SET parents_in = ?, updated_at = ? WHERE id = ? AND kind = 'custom'",
                (json.dumps(list(parents_in)), rows.now_ms(), view_id),
            )
            return _view(conn, view_id)

    def delete_view(self, view_id: int) -> bool:
        with self.db.write() as conn:
            cur = conn.execute("DELETE FROM data_source_views WHERE id = ? AND kind = 'custom'", (view_id,))
            return int(cur.rowcount) > 0

    def existing_node_ids(self, ds: DataSource, node_ids: Sequence[str]) -> set[str]:
        """Those of ``node_ids`` that are documents, folders or tables of ``ds``."""
        if not node_ids:
            return set()
        with self.db.read() as conn:
            d = conn.dialect
            wanted = d.seq(node_ids)
            found = conn.all(
                f"SELECT document_id FROM documents WHERE data_source_id = ? AND {d.any_of('document_id')} "
                f"UNION SELECT folder_id FROM folders WHERE data_source_id = ? AND {d.any_of('folder_id')} "
                f"UNION SELECT table_id FROM data_tables WHERE data_source_id = ? AND {d.any_of('table_id')}",
                (ds.id, wanted, ds.id, wanted, ds.id, wanted),
            )
        return {str(r[0]) for r in found}

    # --- folders -------------------------------------------------------------------------------------------------
    def upsert_folder(self, ds: DataSource, folder: FolderWrite) -> Folder:
        now = rows.now_ms()
        with self.db.write() as conn:
            row = conn.one(
                "INSERT INTO folders (data_source_id, folder_id, title, parents, parent_id, mime_type, source_url, "
                "provider_visibility, timestamp, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (data_source_id, folder_id) DO UPDATE SET title = excluded.title, "
                "parents = excluded.parents, parent_id = excluded.parent_id, mime_type = excluded.mime_type, "
                "source_url = excluded.source_url, provider_visibility = excluded.provider_visibility, "
                f"timestamp = excluded.timestamp, updated = excluded.updated RETURNING {rows.FOLDER_COLS}",
                (ds.id, folder.folder_id, folder.title, json.dumps(list(folder.parents)), folder.parent_id,
                 folder.mime_type, folder.source_url, folder.provider_visibility, folder.timestamp, now, now),
            )  # fmt: skip
        return rows.folder(missing_row(row))

    def get_folder(self, ds: DataSource, folder_id: str) -> Folder | None:
        with self.db.read() as conn:
            row = conn.one(
                f"SELECT {rows.FOLDER_COLS} FROM folders WHERE data_source_id = ? AND folder_id = ?", (ds.id, folder_id)
            )
        return rows.folder(row) if row else None

    def list_folders(self, ds: DataSource) -> list[Folder]:
        """By folder id in code point order (the engines' collations differ, so sorted here)."""
        with self.db.read() as conn:
            found = conn.all(f"SELECT {rows.FOLDER_COLS} FROM folders WHERE data_source_id = ?", (ds.id,))
        return sorted((rows.folder(r) for r in found), key=lambda f: f.folder_id)

    def delete_folder(self, ds: DataSource, folder_id: str) -> bool:
        with self.db.write() as conn:
            cur = conn.execute("DELETE FROM folders WHERE data_source_id = ? AND folder_id = ?", (ds.id, folder_id))
            return int(cur.rowcount) > 0
