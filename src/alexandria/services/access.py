"""Who may reach what: a key's scope, enforced in this one place for every door (Dust and Dify).

A key's scope is its **workspace**, its **role**, its **groups** (which restricted spaces it reads) and, for a key
made with ``alexandria keys create --dataset``, the **one data source** it is bound to. The dialects resolve every
workspace, space, data source and view of a request through :class:`AccessService`, which refuses with
:class:`AccessDenied` and a :class:`Refusal`; each dialect renders a refusal in its own envelope and status
(``api/dust/errors.py``, ``api/dify/errors.py``): Dust hides what a key cannot reach behind its 404s
(``space_not_found``, ``data_source_not_found``, ``data_source_view_not_found``), Dify answers 404 "Dataset not
found." only for a dataset that does not exist and 403 ``forbidden`` otherwise.

Space permissions, after Dust's ``SpaceResource.requestedPermissions`` (dust-behaviour.md §5.1):

| Space               | Read                        | Write                              | Admin        |
|---------------------|-----------------------------|------------------------------------|--------------|
| system              | system keys                 | system keys                        | system keys  |
| global              | every key of the workspace  | admin, builder                     | admin        |
| regular, open       | every key of the workspace  | admin, builder                     | admin        |
| regular, restricted | members of its groups       | members of its groups (builder+)   | admin        |

System keys can do everything (Dust gives them every group and the admin role), unless they narrow their groups
with ``X-Dust-Group-Ids``. Data sources, views, documents, tables and folders inherit the permissions of their
space. Only admin, builder and system keys may use the API at all (Dust's ``isBuilder()``; Dify's dataset keys).

A key bound to a data source reaches that data source and nothing else of its workspace:
- routes about one data source (its documents, tables, folders, search, tokenize...) refuse any other one;
- Dust's listings show only what it reaches: the spaces holding its data source or a view of it, that data source,
  and the views of it; SQL over tables refuses tables of other data sources;
- Dify's routes about no single dataset (list and create datasets, tags, and the workspace's model list
  ``/v1/workspaces/current/models/...``) answer 403, as Dify answers a dataset-bound key (dify-behaviour.md §5).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from alexandria.domain.models import (
    ApiKey,
    DataSource,
    DataSourceView,
    Principal,
    Role,
    Space,
    SpaceKind,
    Workspace,
)
from alexandria.errors import PermissionDenied
from alexandria.services.catalog import CatalogService
from alexandria.services.spaces import SpaceService

API_ROLES = frozenset({Role.ADMIN, Role.BUILDER, Role.SYSTEM})
WRITER_ROLES = frozenset({Role.ADMIN, Role.BUILDER, Role.SYSTEM})
READER_ROLES = API_ROLES | {Role.USER}  # the MCP door: a ``user`` key reads what its groups allow, writes nothing


class Refusal(enum.StrEnum):
    """Why a request is refused; each dialect maps every refusal to its own status and error."""

    OTHER_WORKSPACE = "other_workspace"  # the key belongs to another workspace
    ROLE = "role"  # the key's role may not use the API (``user``)
    SPACE_NOT_FOUND = "space_not_found"  # no such space, or one the key cannot see
    DATA_SOURCE_NOT_FOUND = "data_source_not_found"  # no such data source (there, in that space)
    DATA_SOURCE_HIDDEN = "data_source_hidden"  # it exists, in a space the key cannot read
    OTHER_DATA_SOURCE = "other_data_source"  # the key is bound to another data source
    WORKSPACE_WIDE = "workspace_wide"  # a route about no single data source, and the key is bound to one
    VIEW_NOT_FOUND = "view_not_found"  # no such view in that space, or one the key cannot see
    READ_ONLY = "read_only"  # the key may read the space but not write in it
    MANAGED = "managed"  # a managed (connector) data source, written only by system keys
    NOT_ADMIN = "not_admin"  # the key may not administrate the space


class AccessDenied(PermissionDenied):
    """A refused request: ``refusal`` says why; ``message`` is used by the dialects that take the caller's text."""

    code = "access_denied"

    def __init__(self, refusal: Refusal, message: str = "") -> None:
        super().__init__(message or refusal.value)
        self.refusal = refusal


# --- the space rules (pure) --------------------------------------------------------------------------------------
def _member(who: Principal, space: Space) -> bool:
    return not space.restricted or bool(who.group_ids.intersection(space.group_ids))


def can_read(who: Principal, space: Space) -> bool:
    if who.workspace.id != space.workspace_id:
        return False
    if space.kind is SpaceKind.SYSTEM:
        return who.is_system
    return _member(who, space)  # a system key holds every group unless it narrowed them (X-Dust-Group-Ids)


def can_write(who: Principal, space: Space) -> bool:
    return can_read(who, space) and (who.is_system or (who.role in WRITER_ROLES and _member(who, space)))


def can_administrate(who: Principal, space: Space) -> bool:
    if who.workspace.id != space.workspace_id:
        return False
    return who.is_system or (who.role is Role.ADMIN and space.kind is not SpaceKind.SYSTEM)


class AccessService:
    """Resolves what a request names (space, data source, view) for a caller, or refuses it."""

    def __init__(self, catalog: CatalogService, spaces: SpaceService) -> None:
        self.catalog = catalog
        self.spaces = spaces

    # --- who -----------------------------------------------------------------------------------------------------
    def principal(
        self,
        workspace: Workspace,
        key: ApiKey,
        group_ids: Iterable[str] | None = None,
        roles: frozenset[Role] = API_ROLES,
    ) -> Principal:
        """``key`` acting in ``workspace`` with its groups (every group of the workspace for a system key, which
        may narrow them to ``group_ids``: Dust's ``X-Dust-Group-Ids``). Keys of other ``roles`` are refused (the
        MCP door also admits ``user`` keys, as read-only keys: ``READER_ROLES``)."""
        if key.workspace_id != workspace.id:
            raise AccessDenied(Refusal.OTHER_WORKSPACE)
        if key.role not in roles:
            raise AccessDenied(Refusal.ROLE)
        groups = self.spaces.key_group_ids(workspace, key)
        if key.is_system and group_ids is not None:
            groups = frozenset(set(group_ids) & groups)
        return Principal(workspace, key, groups)

    @staticmethod
    def require_unbound(who: Principal) -> None:
        """Routes about the whole workspace (Dify's dataset list, tags, models) refuse a key bound to a data
        source."""
        if who.key.data_source_id is not None:
            raise AccessDenied(Refusal.WORKSPACE_WIDE)

    # --- spaces --------------------------------------------------------------------------------------------------
    def sees_space(self, who: Principal, space: Space) -> bool:
        """The key reads ``space`` and, if bound, the space holds its data source or a view of it."""
        if not can_read(who, space):
            return False
        bound = who.key.data_source_id
        if bound is None:
            return True
        ds = self.catalog.data_source_by_id(bound)
        if ds is not None and ds.space_id == space.id:
            return True
        return any(v.data_source_id == bound for v in self.spaces.views(who.workspace, space))

    def visible_spaces(self, who: Principal) -> list[Space]:
        return [s for s in self.catalog.spaces(who.workspace) if self.sees_space(who, s)]

    def space(self, who: Principal, sid: str) -> Space:
        space = self.catalog.find_space(who.workspace, sid)
        if space is None or not self.sees_space(who, space):
            raise AccessDenied(Refusal.SPACE_NOT_FOUND)
        return space

    # --- data sources --------------------------------------------------------------------------------------------
    def data_source(
        self, who: Principal, ref: str, space_sid: str | None = None, *, anywhere: bool = False
    ) -> tuple[Space, DataSource]:
        """Data source ``ref`` (sId or name) of space ``space_sid``; without a space, of the global space, or of any
        space if ``anywhere`` (or for a system key: Dust's legacy routes). Refused when missing, elsewhere, in a
        space the key cannot read, or not the data source the key is bound to."""
        if space_sid is not None:
            space = self.space(who, space_sid)
        else:
            space = self.catalog.global_space(who.workspace)
            anywhere = anywhere or who.is_system
        ds = self.catalog.find_data_source(who.workspace, ref)
        if ds is None:
            raise AccessDenied(Refusal.DATA_SOURCE_NOT_FOUND)
        if ds.space_id != space.id:
            own = self.catalog.space_by_id(ds.space_id) if space_sid is None and anywhere else None
            if own is None:
                raise AccessDenied(Refusal.DATA_SOURCE_NOT_FOUND)
            space = own
        self._check_data_source(who, space, ds)
        return space, ds

    def dataset(self, who: Principal, uuid: str) -> tuple[Space, DataSource]:
        """The data source whose Dify dataset id is ``uuid``, in whatever space it lives."""
        ds = self.catalog.find_dataset(who.workspace, uuid)
        space = self.catalog.space_by_id(ds.space_id) if ds is not None else None
        if ds is None or space is None:
            raise AccessDenied(Refusal.DATA_SOURCE_NOT_FOUND)
        self._check_data_source(who, space, ds)
        return space, ds

    def _check_data_source(self, who: Principal, space: Space, ds: DataSource) -> None:
        bound = who.key.data_source_id
        if bound is not None and bound != ds.id:
            raise AccessDenied(Refusal.OTHER_DATA_SOURCE)
        if not can_read(who, space):
            raise AccessDenied(Refusal.DATA_SOURCE_HIDDEN)

    def sees_data_source(self, who: Principal, ds: DataSource, space: Space) -> bool:
        bound = who.key.data_source_id
        return (bound is None or bound == ds.id) and can_read(who, space)

    def visible_data_sources(self, who: Principal, space: Space | None = None) -> list[DataSource]:
        """The data sources of ``space`` (or of the whole workspace) the key reaches."""
        spaces = {s.id: s for s in self.catalog.spaces(who.workspace)}
        return [
            ds
            for ds in self.catalog.data_sources(who.workspace, space)
            if ds.space_id in spaces and self.sees_data_source(who, ds, spaces[ds.space_id])
        ]

    # --- views ---------------------------------------------------------------------------------------------------
    def view(self, who: Principal, space_sid: str, view_sid: str) -> tuple[Space, DataSourceView, DataSource]:
        """View ``view_sid`` of space ``space_sid`` and its data source."""
        space = self.space(who, space_sid)
        view = self.spaces.find_view(who.workspace, view_sid)
        if view is None or view.space_id != space.id or not self._sees_view_source(who, view):
            raise AccessDenied(Refusal.VIEW_NOT_FOUND)
        ds = self.catalog.data_source_by_id(view.data_source_id)
        if ds is None:
            raise AccessDenied(Refusal.VIEW_NOT_FOUND)
        return space, view, ds

    @staticmethod
    def _sees_view_source(who: Principal, view: DataSourceView) -> bool:
        bound = who.key.data_source_id
        return bound is None or view.data_source_id == bound

    def visible_views(self, who: Principal, space: Space | None = None) -> list[DataSourceView]:
        """The views of ``space`` (already resolved for the caller), or of every space the key sees."""
        if space is not None:
            views = self.spaces.views(who.workspace, space)
        else:
            seen = {s.id for s in self.visible_spaces(who)}
            views = [v for v in self.spaces.views(who.workspace) if v.space_id in seen]
        return [v for v in views if self._sees_view_source(who, v)]

    # --- what the caller may do there ----------------------------------------------------------------------------
    @staticmethod
    def require_write(who: Principal, space: Space, message: str) -> None:
        if not can_write(who, space):
            raise AccessDenied(Refusal.READ_ONLY, message)

    @staticmethod
    def require_unmanaged(who: Principal, ds: DataSource, message: str) -> None:
        """A managed (connector) data source is written by system keys only."""
        if ds.connector_provider is not None and not who.is_system:
            raise AccessDenied(Refusal.MANAGED, message)

    @staticmethod
    def require_admin(who: Principal, space: Space, message: str) -> None:
        if not can_administrate(who, space):
            raise AccessDenied(Refusal.NOT_ADMIN, message)
