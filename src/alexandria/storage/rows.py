"""Row <-> domain object mapping and id generation, shared by the backends (JSON columns come back as text from
SQLite and decoded from PostgreSQL's jsonb: :func:`js` takes both)."""

from __future__ import annotations

import json
import secrets
import sqlite3
import string
import time
import uuid
from typing import Any

from alexandria.domain.models import (
    ApiKey,
    DataSource,
    DataSourceView,
    Document,
    Folder,
    Group,
    GroupKind,
    Role,
    Space,
    SpaceKind,
    ViewKind,
    Workspace,
)

_ALPHABET = string.ascii_letters + string.digits


def new_sid(prefix: str) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(10))


def js(value: object, default: object = None) -> Any:
    """A JSON column's value: decoded from text (SQLite) or already decoded (PostgreSQL jsonb); ``default`` if NULL."""
    if value is None:
        return default
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


def new_uuid() -> str:
    return str(uuid.uuid4())


def now_ms() -> int:
    return int(time.time() * 1000)


WORKSPACE_COLS = "id, sid, name, created_at"
GROUP_COLS = "id, sid, workspace_id, name, kind, created_at"
VIEW_COLS = "id, sid, workspace_id, space_id, data_source_id, kind, parents_in, created_at, updated_at"
FOLDER_COLS = (
    "id, data_source_id, folder_id, title, parents, parent_id, mime_type, source_url, provider_visibility, "
    "timestamp, created"
)
DATA_SOURCE_COLS = (
    "id, sid, workspace_id, space_id, name, description, created_at, embedder, dim, chunk_size, core_id, "
    "connector_provider, uuid, dify, updated_at"
)
API_KEY_COLS = "id, workspace_id, name, role, prefix, created_at, disabled_at, data_source_id"
DOCUMENT_COLS = (
    "id, data_source_id, document_id, title, mime_type, source_url, timestamp, tags, parents, parent_id, hash, "
    "text_size, chunk_count, token_count, created, uuid, position, enabled, archived, disabled_at, index_state, "
    "index_error, doc_metadata, batch, dify, updated"
)
DOCUMENT_TEXT_AT = 26  # index of ``text`` when selected after DOCUMENT_COLS


def workspace(row: sqlite3.Row | tuple[object, ...]) -> Workspace:
    return Workspace(id=int(str(row[0])), sid=str(row[1]), name=str(row[2]), created_at=int(str(row[3])))


def space(row: tuple[object, ...]) -> Space:
    kind = SpaceKind(str(row[3]))
    return Space(
        id=int(str(row[0])),
        sid=str(row[1]),
        workspace_id=int(str(row[2])),
        kind=kind,
        name=str(row[4]),
        created_at=int(str(row[5])),
        updated_at=int(str(row[6])),
        restricted=kind is SpaceKind.REGULAR and int(str(row[8])) == 0,
        group_ids=tuple(sorted(js(row[7]))),
    )


def group(row: tuple[object, ...]) -> Group:
    return Group(
        id=int(str(row[0])),
        sid=str(row[1]),
        workspace_id=int(str(row[2])),
        name=str(row[3]),
        kind=GroupKind(str(row[4])),
        created_at=int(str(row[5])),
    )


def view(row: tuple[object, ...]) -> DataSourceView:
    return DataSourceView(
        id=int(str(row[0])),
        sid=str(row[1]),
        workspace_id=int(str(row[2])),
        space_id=int(str(row[3])),
        data_source_id=int(str(row[4])),
        kind=ViewKind(str(row[5])),
        parents_in=None if row[6] is None else tuple(js(row[6])),
        created_at=int(str(row[7])),
        updated_at=int(str(row[8])),
    )


def folder(row: tuple[object, ...]) -> Folder:
    return Folder(
        pk=int(str(row[0])),
        data_source_id=int(str(row[1])),
        folder_id=str(row[2]),
        title=str(row[3]),
        parents=tuple(js(row[4])),
        parent_id=None if row[5] is None else str(row[5]),
        mime_type=str(row[6]),
        source_url=None if row[7] is None else str(row[7]),
        provider_visibility=None if row[8] is None else str(row[8]),
        timestamp=int(str(row[9])),
        created=int(str(row[10])),
    )


def data_source(row: tuple[object, ...]) -> DataSource:
    return DataSource(
        id=int(str(row[0])),
        sid=str(row[1]),
        workspace_id=int(str(row[2])),
        space_id=int(str(row[3])),
        name=str(row[4]),
        description=None if row[5] is None else str(row[5]),
        created_at=int(str(row[6])),
        embedder=str(row[7]),
        dim=int(str(row[8])),
        chunk_size=int(str(row[9])),
        core_id=str(row[10]),
        connector_provider=None if row[11] is None else str(row[11]),
        uuid=str(row[12] or ""),
        dify=js(row[13], {}),
        updated_at=int(str(row[14] or 0)),
    )


def api_key(row: tuple[object, ...]) -> ApiKey:
    return ApiKey(
        id=int(str(row[0])),
        workspace_id=int(str(row[1])),
        name=str(row[2]),
        role=Role(str(row[3])),
        prefix=str(row[4]),
        created_at=int(str(row[5])),
        disabled=row[6] is not None,
        data_source_id=None if row[7] is None else int(str(row[7])),
    )


def document(row: tuple[object, ...], text: str | None = None) -> Document:
    return Document(
        pk=int(str(row[0])),
        data_source_id=int(str(row[1])),
        document_id=str(row[2]),
        title=str(row[3]),
        mime_type=str(row[4]),
        source_url=None if row[5] is None else str(row[5]),
        timestamp=int(str(row[6])),
        tags=tuple(js(row[7])),
        parents=tuple(js(row[8])),
        parent_id=None if row[9] is None else str(row[9]),
        hash=str(row[10]),
        text_size=int(str(row[11])),
        chunk_count=int(str(row[12])),
        token_count=int(str(row[13])),
        created=int(str(row[14])),
        text=text,
        uuid=str(row[15] or ""),
        position=int(str(row[16])),
        enabled=bool(row[17]),
        archived=bool(row[18]),
        disabled_at=None if row[19] is None else int(str(row[19])),
        index_state=str(row[20]),
        index_error=None if row[21] is None else str(row[21]),
        doc_metadata=js(row[22], {}),
        batch=None if row[23] is None else str(row[23]),
        dify=None if row[24] is None else js(row[24]),
        updated=int(str(row[25])),
    )
