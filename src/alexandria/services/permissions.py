"""Space permissions, after Dust's ``SpaceResource.requestedPermissions`` (dust-behaviour.md §5.1).

| Space               | Read                        | Write                              | Admin        |
|---------------------|-----------------------------|------------------------------------|--------------|
| system              | system keys                 | system keys                        | system keys  |
| global              | every key of the workspace  | admin, builder                     | admin        |
| regular, open       | every key of the workspace  | admin, builder                     | admin        |
| regular, restricted | members of its groups       | members of its groups (builder+)   | admin        |

System keys can do everything (Dust gives them every group and the admin role), unless they narrow their groups
with ``X-Dust-Group-Ids``. Data sources, views, documents,
tables and folders inherit the permissions of their space.
"""

from __future__ import annotations

from alexandria.domain.models import Principal, Role, Space, SpaceKind

WRITER_ROLES = frozenset({Role.ADMIN, Role.BUILDER, Role.SYSTEM})


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
