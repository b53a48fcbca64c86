"""Spaces, groups and data source views (Dust's permission model, dust-behaviour.md §5.1 and §2.3)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from alexandria.domain.filters import DocumentFilter
from alexandria.domain.models import ApiKey, DataSource, DataSourceView, Group, Space, ViewKind, Workspace
from alexandria.errors import AlreadyExists, InvalidRequest, NotFound
from alexandria.storage.base import SpacesStore
from alexandria.storage.database import DuplicateKey

_NAME = re.compile(r"^\S(.{0,126}\S)?$")


class SpaceService:
    def __init__(self, store: SpacesStore) -> None:
        self.store = store

    # --- groups --------------------------------------------------------------------------------------------------
    def key_group_ids(self, workspace: Workspace, key: ApiKey) -> frozenset[str]:
        """The groups a key acts with: every group of the workspace for a system key, else its own groups plus
        the workspace's global group."""
        return frozenset(self.store.key_group_sids(workspace.id, None if key.is_system else key.id))

    def member_of(self, workspace: Workspace, key: ApiKey) -> list[str]:
        """The groups ``key`` is a member of (the workspace's global group included), even for a system key."""
        return self.store.key_group_sids(workspace.id, key.id)

    def groups(self, workspace: Workspace) -> list[Group]:
        return self.store.list_groups(workspace.id)

    def create_group(self, workspace: Workspace, name: str) -> Group:
        _check_name(name, "group")
        try:
            return self.store.create_group(workspace.id, name)
        except DuplicateKey as exc:
            raise AlreadyExists(f"a group named {name!r} already exists", code="group_name_taken") from exc

    def group(self, workspace: Workspace, sid_or_name: str) -> Group:
        group = self.store.get_group(workspace.id, sid_or_name)
        if group is None:
            raise NotFound(f"no group {sid_or_name!r} in this workspace", code="group_not_found")
        return group

    def add_key(self, workspace: Workspace, group_sid_or_name: str, key: ApiKey) -> Group:
        if key.workspace_id != workspace.id:
            raise NotFound("no such key in this workspace", code="key_not_found")
        group = self.group(workspace, group_sid_or_name)
        self.store.add_key_to_group(group.id, key.id)
        return group

    # --- spaces --------------------------------------------------------------------------------------------------
    def create_space(self, workspace: Workspace, name: str, *, restricted: bool, groups: Sequence[str] = ()) -> Space:
        """A regular space: open to every key of the workspace, or (``restricted``) only to members of ``groups``."""
        _check_name(name, "space")
        if restricted and not groups:
            raise InvalidRequest("a restricted space needs at least one group", code="invalid_space")
        ids = [self.group(workspace, g).id for g in groups]
        try:
            return self.store.create_space(workspace.id, name, ids, open_to_all=not restricted)
        except DuplicateKey as exc:
            raise AlreadyExists(f"a space named {name!r} already exists", code="space_name_taken") from exc

    # --- views ---------------------------------------------------------------------------------------------------
    def views(self, workspace: Workspace, space: Space | None = None) -> list[DataSourceView]:
        """The views of ``space``, or of the whole workspace."""
        return self.store.list_views(workspace.id, None if space is None else space.id)

    def find_view(self, workspace: Workspace, sid: str) -> DataSourceView | None:
        return self.store.get_view(workspace.id, sid)

    def delete_view(self, workspace: Workspace, sid: str) -> bool:
        """Delete the custom view ``sid``; False if the workspace has no such view (default views live as long as
        their data source)."""
        view = self.find_view(workspace, sid)
        return view is not None and self.store.delete_view(view.id)

    def create_view(
        self, workspace: Workspace, ds: DataSource, space: Space, parents_in: Sequence[str]
    ) -> DataSourceView:
        """A custom view exposing the nodes of ``ds`` under ``parents_in`` in ``space``."""
        if ds.workspace_id != workspace.id or space.workspace_id != workspace.id:
            raise NotFound("The data source you requested was not found.", code="data_source_not_found")
        return self.store.create_view(ds, space.id, list(dict.fromkeys(parents_in)))

    def patch_view(
        self,
        view: DataSourceView,
        ds: DataSource,
        *,
        parents_in: Sequence[str] | None = None,
        to_add: Sequence[str] = (),
        to_remove: Sequence[str] = (),
    ) -> DataSourceView:
        """Replace a custom view's parents (``parents_in``) or add/remove some; added parents must be nodes of the
        data source (documents, folders or tables)."""
        if view.kind is ViewKind.DEFAULT:
            raise InvalidRequest("`parentsIn` cannot be set for default data source view", code="default_view")
        if parents_in is not None:
            wanted = list(dict.fromkeys(parents_in))
            added = [p for p in wanted if p not in (view.parents_in or ())]
        else:
            current = list(view.parents_in or ())
            added = [p for p in dict.fromkeys(to_add) if p not in current]
            removed = set(to_remove)
            wanted = [p for p in current + added if p not in removed]
        missing = set(added) - self.store.existing_node_ids(ds, added) if added else set()
        if missing:
            raise InvalidRequest(
                f"Some parents do not exist in this data source view: {', '.join(sorted(missing))}",
                code="unknown_parents",
            )
        updated = self.store.update_view_parents(view.id, wanted)
        if updated is None:
            raise NotFound("The data source view was not found.", code="data_source_view_not_found")
        return updated


def view_filter(view: DataSourceView) -> DocumentFilter:
    """The restriction a view puts on searches: its parents (Dust's ``view_filter``); none for default views."""
    if view.kind is ViewKind.DEFAULT or view.parents_in is None:
        return DocumentFilter()
    return DocumentFilter(parents_in=view.parents_in)


def _check_name(name: str, what: str) -> None:
    if not _NAME.match(name):
        raise InvalidRequest(f"invalid {what} name {name!r}: 1-128 characters, no leading or trailing space")
