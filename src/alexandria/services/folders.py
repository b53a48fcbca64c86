"""Folders: nodes of a data source's hierarchy that documents, tables and other folders sit under (their id appears
in those nodes' ``parents``) and that custom views can select (dust-behaviour.md §2.9)."""

from __future__ import annotations

from dataclasses import dataclass

from alexandria.domain.models import DataSource, Folder
from alexandria.errors import InvalidRequest
from alexandria.services.documents import MAX_TITLE_LENGTH, check_parents, normalize_timestamp
from alexandria.storage.base import FolderStore, FolderWrite

UNTITLED_FOLDER = "Untitled Folder"


@dataclass(frozen=True)
class FolderRequest:
    folder_id: str
    title: str | None
    mime_type: str
    timestamp: float | None = None
    parents: tuple[str, ...] | None = None
    parent_id: str | None = None
    source_url: str | None = None
    provider_visibility: str | None = None


class FolderService:
    def __init__(self, store: FolderStore) -> None:
        self.store = store

    def upsert(self, ds: DataSource, req: FolderRequest, now_ms: int) -> Folder:
        if not req.folder_id:
            raise InvalidRequest("Invalid folder id: must not be empty.")
        if req.title is not None and len(req.title) > MAX_TITLE_LENGTH:
            raise InvalidRequest(f"Invalid title: title too long (max {MAX_TITLE_LENGTH} characters).")
        if req.provider_visibility not in (None, "public", "private"):
            raise InvalidRequest("Invalid provider_visibility: must be `public`, `private` or null.")
        parents = req.parents if req.parents is not None else (req.folder_id,)
        parent_id = req.parent_id
        if req.parents is not None:
            if parent_id is None and len(parents) >= 2:
                parent_id = parents[1]
            check_parents(req.folder_id, parents, parent_id, explicit_parent_id=True)
        elif parent_id is not None:
            parents = (req.folder_id, parent_id)
        write = FolderWrite(
            folder_id=req.folder_id,
            title=(req.title or "").strip() or UNTITLED_FOLDER,
            parents=tuple(parents),
            parent_id=parent_id,
            mime_type=req.mime_type,
            source_url=req.source_url,
            provider_visibility=req.provider_visibility,
            timestamp=normalize_timestamp(req.timestamp, now_ms),
        )
        return self.store.upsert_folder(ds, write)

    def get(self, ds: DataSource, folder_id: str) -> Folder | None:
        return self.store.get_folder(ds, folder_id)

    def list(self, ds: DataSource) -> list[Folder]:
        return self.store.list_folders(ds)

    def delete(self, ds: DataSource, folder_id: str) -> bool:
        return self.store.delete_folder(ds, folder_id)
