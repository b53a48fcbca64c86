"""Workspaces, spaces and data sources."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from alexandria.config import Settings
from alexandria.domain.models import DataSource, Space, Workspace
from alexandria.errors import AlreadyExists, InvalidRequest, NotFound
from alexandria.services.embedders import EmbedderRegistry
from alexandria.storage.base import CatalogStore
from alexandria.storage.database import DuplicateKey

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,127}$")


class CatalogService:
    def __init__(self, store: CatalogStore, embedders: EmbedderRegistry, settings: Settings) -> None:
        self.store = store
        self.embedders = embedders
        self.settings = settings

    def ensure_workspace(self, sid: str, name: str | None = None) -> tuple[Workspace, Space]:
        """Get or create workspace ``sid`` and its global space."""
        if not _NAME.match(sid) or " " in sid:
            raise InvalidRequest(f"invalid workspace id {sid!r}: use letters, digits, '.', '_' or '-'")
        ws = self.store.get_workspace(sid)
        if ws is None:
            try:
                ws = self.store.create_workspace(sid, name or sid)
            except DuplicateKey as exc:
                raise AlreadyExists(f"workspace {sid!r} already exists", code="workspace_exists") from exc
        return ws, self.store.ensure_global_space(ws)

    def find_workspace(self, sid: str) -> Workspace | None:
        return self.store.get_workspace(sid)

    def workspace_by_id(self, workspace_id: int) -> Workspace | None:
        return self.store.get_workspace_by_id(workspace_id)

    def workspace(self, sid: str) -> Workspace:
        ws = self.find_workspace(sid)
        if ws is None:
            raise NotFound("The workspace was not found.", code="workspace_not_found")
        return ws

    def create_data_source(
        self,
        workspace: Workspace,
        name: str,
        *,
        space: Space | None = None,
        description: str | None = None,
        embedder: str | None = None,
        chunk_size: int | None = None,
        connector_provider: str | None = None,
        check_name: bool = True,
        dify: Mapping[str, Any] | None = None,
    ) -> DataSource:
        """A data source in ``space`` (default: the global space). A managed one (``connector_provider`` set) lives
        in the system space, as Dust's connectors do, and is shared with other spaces through custom views."""
        if check_name and not _NAME.match(name):
            raise InvalidRequest(
                f"invalid data source name {name!r}: 1-128 letters, digits, spaces, '.', '_' or '-'",
                code="invalid_data_source_name",
            )
        if connector_provider is not None:
            space = space or self.store.ensure_system_space(workspace)
        space = space or self.store.ensure_global_space(workspace)
        embedder_name = embedder or self.embedders.default_name()
        model = self.embedders.get(embedder_name)
        size = chunk_size or self.settings.chunk_size or model.max_tokens
        if size < 16 or size > model.max_tokens:
            raise InvalidRequest(
                f"chunk size must be between 16 and the model's limit of {model.max_tokens} tokens",
                code="invalid_chunk_size",
            )
        try:
            return self.store.create_data_source(
                workspace.id, space.id, name, description, embedder_name, model.dim, size, connector_provider, dify
            )
        except DuplicateKey as exc:
            raise AlreadyExists(
                f"a data source named {name!r} already exists in this workspace", code="data_source_name_taken"
            ) from exc

    def find_data_source(self, workspace: Workspace, sid_or_name: str) -> DataSource | None:
        """The workspace's data source ``sid_or_name`` (its sId or name), in any space."""
        return self.store.get_data_source(workspace.id, sid_or_name)

    def find_dataset(self, workspace: Workspace, uuid: str) -> DataSource | None:
        """The workspace's data source whose Dify dataset id is ``uuid``."""
        return self.store.get_data_source_by_uuid(workspace.id, uuid)

    def data_source_by_id(self, data_source_id: int) -> DataSource | None:
        return self.store.get_data_source_by_id(data_source_id)

    def data_sources(self, workspace: Workspace, space: Space | None = None) -> list[DataSource]:
        """The data sources of ``space``, or of the whole workspace."""
        return self.store.list_data_sources(workspace.id, None if space is None else space.id)

    def data_source(self, workspace: Workspace, sid_or_name: str, space: Space | None = None) -> DataSource:
        ds = self.find_data_source(workspace, sid_or_name)
        if ds is None or (space is not None and ds.space_id != space.id):
            raise NotFound("The data source you requested was not found.", code="data_source_not_found")
        return ds

    def global_space(self, workspace: Workspace) -> Space:
        """The workspace's global space (created with the workspace; re-created if it was ever lost)."""
        return self.store.global_space(workspace.id) or self.store.ensure_global_space(workspace)

    def spaces(self, workspace: Workspace) -> list[Space]:
        return self.store.list_spaces(workspace.id)

    def find_space(self, workspace: Workspace, sid: str) -> Space | None:
        return self.store.get_space(workspace.id, sid)

    def space_by_id(self, space_id: int) -> Space | None:
        return self.store.get_space_by_id(space_id)

    def space_by_name_or_id(self, workspace: Workspace, sid_or_name: str) -> Space:
        for space in self.spaces(workspace):
            if sid_or_name in (space.sid, space.name):
                return space
        raise NotFound(f"no space {sid_or_name!r} in this workspace", code="space_not_found")

    def space(self, workspace: Workspace, sid: str) -> Space:
        space = self.find_space(workspace, sid)
        if space is None:
            raise NotFound("The space you requested was not found.", code="space_not_found")
        return space
