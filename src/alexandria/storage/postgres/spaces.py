"""Spaces, groups, data source views and folders on PostgreSQL (a mixin of ``PostgresStore``; the port of
``storage.sqlite.spaces.SqliteSpaces``). The system space and ``get_data_source_by_id`` live in ``PgCore``."""

from __future__ import annotations

import json
from collections.abc import Sequence

import psycopg

from alexandria.domain.models import ApiKey, DataSource, DataSourceView, Folder, Group, Space, SpaceKind, ViewKind
from alexandria.errors import AlreadyExists, NotFound
from alexandria.storage import rows
from alexandria.storage.base import FolderWrite
from alexandria.storage.postgres.core import SPACE_COLS, ensure_global_group, insert_view
from alexandria.storage.postgres.db import PgEngine


class PgSpaces:
    """Spaces, groups, views and folders of :class:`PostgresStore`."""

    engine: PgEngine

    # --- spaces and groups ---------------------------------------------------------------------------------------
    def create_space(self, workspace_id: int, name: str, group_ids: Sequence[int], open_to_all: bool) -> Space:
        """A regular space attached to ``group_ids`` (and to the global group when ``open_to_all``)."""
        now = rows.now_ms()
        try:
            with self.engine.write() as conn:
                created = conn.execute(
                    "INSERT INTO spaces (sid, workspace_id, kind, name, created_at, updated_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                    (rows.new_sid("vlt"), workspace_id, SpaceKind.REGULAR.value, name, now, now),
                ).fetchone()
                assert created is not None
                space_id = int(created[0])
                ids = set(group_ids)
                if open_to_all:
                    ids.add(ensure_global_group(conn, workspace_id))
                if ids:
                    conn.execute(
                        "INSERT INTO space_groups (space_id, group_id) SELECT %s, g FROM unnest(%s::bigint[]) g",
                        (space_id, sorted(ids)),
                    )
                row = conn.execute(f"SELECT {SPACE_COLS} FROM spaces WHERE id = %s", (space_id,)).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            raise AlreadyExists(f"a space named {name!r} already exists", code="space_name_taken") from exc
        assert row is not None
        return rows.space(row)

    def create_group(self, workspace_id: int, name: str) -> Group:
        try:
            with self.engine.write() as conn:
                row = conn.execute(
                    "INSERT INTO groups (sid, workspace_id, name, kind, created_at) "
                    f"VALUES (%s, %s, %s, 'regular', %s) RETURNING {rows.GROUP_COLS}",
                    (rows.new_sid("grp"), workspace_id, name, rows.now_ms()),
                ).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            raise AlreadyExists(f"a group named {name!r} already exists", code="group_name_taken") from exc
        assert row is not None
        return rows.group(row)

    def list_groups(self, workspace_id: int) -> list[Group]:
        with self.engine.write() as conn:
            ensure_global_group(conn, workspace_id)
        with self.engine.read() as conn:
            found = conn.execute(
                f"SELECT {rows.GROUP_COLS} FROM groups WHERE workspace_id = %s ORDER BY id", (workspace_id,)
            ).fetchall()
        return [rows.group(r) for r in found]

    def get_group(self, workspace_id: int, sid_or_name: str) -> Group | None:
        with self.engine.read() as conn:
            row = conn.execute(
                f"SELECT {rows.GROUP_COLS} FROM groups WHERE workspace_id = %s AND (sid = %s OR name = %s) "
                "ORDER BY (sid = %s) DESC LIMIT 1",
                (workspace_id, sid_or_name, sid_or_name, sid_or_name),
            ).fetchone()
        return rows.group(row) if row else None

    def add_key_to_group(self, group_id: int, api_key_id: int) -> None:
        with self.engine.write() as conn:
            conn.execute(
                "INSERT INTO group_keys (group_id, api_key_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (group_id, api_key_id),
            )

    def remove_key_from_group(self, group_id: int, api_key_id: int) -> bool:
        with self.engine.write() as conn:
            cur = conn.execute("DELETE FROM group_keys WHERE group_id = %s AND api_key_id = %s", (group_id, api_key_id))
        return cur.rowcount > 0

    def set_space_groups(self, space_id: int, group_ids: Sequence[int]) -> None:
        with self.engine.write() as conn:
            conn.execute("DELETE FROM space_groups WHERE space_id = %s", (space_id,))
            if group_ids:
                conn.execute(
                    "INSERT INTO space_groups (space_id, group_id) SELECT %s, g FROM unnest(%s::bigint[]) g",
                    (space_id, sorted(set(group_ids))),
                )
            conn.execute("UPDATE spaces SET updated_at = %s WHERE id = %s", (rows.now_ms(), space_id))

    def key_group_sids(self, workspace_id: int, api_key_id: int | None) -> list[str]:
        """Group sIds of a key plus the global group; every group of the workspace when ``api_key_id`` is None."""
        with self.engine.read() as conn:
            if api_key_id is None:
                found = conn.execute(
                    "SELECT sid FROM groups WHERE workspace_id = %s ORDER BY id", (workspace_id,)
                ).fetchall()
            else:
                found = conn.execute(
                    "SELECT g.sid FROM groups g WHERE g.workspace_id = %s AND (g.kind = 'global' OR g.id IN "
                    "(SELECT group_id FROM group_keys WHERE api_key_id = %s)) ORDER BY g.id",
                    (workspace_id, api_key_id),
                ).fetchall()
        return [str(r[0]) for r in found]

    def list_api_keys(self, workspace_id: int) -> list[ApiKey]:
        with self.engine.read() as conn:
            found = conn.execute(
                f"SELECT {rows.API_KEY_COLS} FROM api_keys WHERE workspace_id = %s ORDER BY id", (workspace_id,)
            ).fetchall()
        return [rows.api_key(r) for r in found]

    def disable_api_key(self, workspace_id: int, api_key_id: int) -> bool:
        with self.engine.write() as conn:
            cur = conn.execute(
                "UPDATE api_keys SET disabled_at = %s WHERE id = %s AND workspace_id = %s AND disabled_at IS NULL",
                (rows.now_ms(), api_key_id, workspace_id),
            )
        return cur.rowcount > 0

    # --- data source views ---------------------------------------------------------------------------------------
    def create_view(self, ds: DataSource, space_id: int, parents_in: Sequence[str]) -> DataSourceView:
        """A custom view of ``ds`` in space ``space_id`` exposing the nodes under ``parents_in``."""
        with self.engine.write() as conn:
            view_id = insert_view(conn, ds.workspace_id, space_id, ds.id, ViewKind.CUSTOM, parents_in)
            row = conn.execute(f"SELECT {rows.VIEW_COLS} FROM data_source_views WHERE id = %s", (view_id,)).fetchone()
        assert row is not None
        return rows.view(row)

    def list_views(self, workspace_id: int, space_id: int | None = None) -> list[DataSourceView]:
        where = "workspace_id = %s"
        params: list[object] = [workspace_id]
        if space_id is not None:
            where += " AND space_id = %s"
            params.append(space_id)
        with self.engine.read() as conn:
            found = conn.execute(
                f"SELECT {rows.VIEW_COLS} FROM data_source_views WHERE {where} ORDER BY id", tuple(params)
            ).fetchall()
        return [rows.view(r) for r in found]

    def get_view(self, workspace_id: int, sid: str) -> DataSourceView | None:
        with self.engine.read() as conn:
            row = conn.execute(
                f"SELECT {rows.VIEW_COLS} FROM data_source_views WHERE workspace_id = %s AND sid = %s",
                (workspace_id, sid),
            ).fetchone()
        return rows.view(row) if row else None

    def update_view_parents(self, view_id: int, parents_in: Sequence[str]) -> DataSourceView:
        with self.engine.write() as conn:
            conn.execute(
                "UPDATE data_source_views SET parents_in = %s, updated_at = %s WHERE id = %s AND kind = 'custom'",
                (json.dumps(list(parents_in)), rows.now_ms(), view_id),
            )
            row = conn.execute(f"SELECT {rows.VIEW_COLS} FROM data_source_views WHERE id = %s", (view_id,)).fetchone()
        if row is None:
            raise NotFound("The data source view was not found.", code="data_source_view_not_found")
        return rows.view(row)

    def delete_view(self, view_id: int) -> bool:
        with self.engine.write() as conn:
            cur = conn.execute("DELETE FROM data_source_views WHERE id = %s AND kind = 'custom'", (view_id,))
        return cur.rowcount > 0

    def existing_node_ids(self, ds: DataSource, node_ids: Sequence[str]) -> set[str]:
        """Those of ``node_ids`` that are documents, folders or tables of ``ds``."""
        if not node_ids:
            return set()
        wanted = list(node_ids)
        with self.engine.read() as conn:
            found = conn.execute(
                "SELECT document_id FROM documents WHERE data_source_id = %s AND document_id = ANY(%s::text[]) "
                "UNION SELECT folder_id FROM folders WHERE data_source_id = %s AND folder_id = ANY(%s::text[]) "
                "UNION SELECT table_id FROM data_tables WHERE data_source_id = %s AND table_id = ANY(%s::text[])",
                (ds.id, wanted, ds.id, wanted, ds.id, wanted),
            ).fetchall()
        return {str(r[0]) for r in found}

    # --- folders -------------------------------------------------------------------------------------------------
    def upsert_folder(self, ds: DataSource, folder: FolderWrite) -> Folder:
        now = rows.now_ms()
        with self.engine.write() as conn:
            row = conn.execute(
                "INSERT INTO folders (data_source_id, folder_id, title, parents, parent_id, mime_type, source_url, "
                "provider_visibility, timestamp, created, updated) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (data_source_id, folder_id) DO UPDATE SET title = excluded.title, "
                "parents = excluded.parents, parent_id = excluded.parent_id, mime_type = excluded.mime_type, "
                "source_url = excluded.source_url, provider_visibility = excluded.provider_visibility, "
                f"timestamp = excluded.timestamp, updated = excluded.updated RETURNING {rows.FOLDER_COLS}",
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
            ).fetchone()
        assert row is not None
        return rows.folder(row)

    def get_folder(self, ds: DataSource, folder_id: str) -> Folder | None:
        with self.engine.read() as conn:
            row = conn.execute(
                f"SELECT {rows.FOLDER_COLS} FROM folders WHERE data_source_id = %s AND folder_id = %s",
                (ds.id, folder_id),
            ).fetchone()
        return rows.folder(row) if row else None

    def list_folders(self, ds: DataSource) -> list[Folder]:
        with self.engine.read() as conn:
            found = conn.execute(
                f'SELECT {rows.FOLDER_COLS} FROM folders WHERE data_source_id = %s ORDER BY folder_id COLLATE "C"',
                (ds.id,),
            ).fetchall()
        return [rows.folder(r) for r in found]

    def delete_folder(self, ds: DataSource, folder_id: str) -> bool:
        with self.engine.write() as conn:
            cur = conn.execute("DELETE FROM folders WHERE data_source_id = %s AND folder_id = %s", (ds.id, folder_id))
        return cur.rowcount > 0
