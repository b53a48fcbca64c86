"""CLI commands for the permission model: spaces, groups, key listing/revocation and data source views."""

from __future__ import annotations

from pathlib import Path

import click

from alexandria.cli_common import data_dir_option, err, fail, open_core, settings_for
from alexandria.errors import AlexandriaError


@click.group()
def spaces() -> None:
    """Manage spaces (the global space exists with the workspace; regular spaces are open or restricted)."""


@spaces.command("create")
@data_dir_option
@click.option("--workspace", required=True)
@click.option("--restricted", is_flag=True, help="Open only to members of --group (default: open to every key).")
@click.option("--group", "groups", multiple=True, help="Group (name or id) attached to the space (repeatable).")
@click.argument("name")
def spaces_create(data_dir: Path | None, workspace: str, restricted: bool, groups: tuple[str, ...], name: str) -> None:
    """Create a regular space; prints its id (last line)."""
    with open_core(settings_for(data_dir)) as core:
        try:
            ws, _ = core.catalog.ensure_workspace(workspace)
            space = core.spaces.create_space(ws, name, restricted=restricted, groups=groups)
        except AlexandriaError as exc:
            fail(exc.message)
        err.print(f"created {'restricted' if space.restricted else 'open'} space {space.name!r}")
        click.echo(space.sid)


@spaces.command("list")
@data_dir_option
@click.option("--workspace", required=True)
def spaces_list(data_dir: Path | None, workspace: str) -> None:
    """List the workspace's spaces: id, kind, name, restricted, groups."""
    with open_core(settings_for(data_dir)) as core:
        try:
            ws = core.catalog.workspace(workspace)
        except AlexandriaError as exc:
            fail(exc.message)
        for s in core.catalog.spaces(ws):
            flag = "restricted" if s.restricted else "open"
            click.echo(f"{s.sid}\t{s.kind.value}\t{s.name}\t{flag}\t{','.join(s.group_ids)}")


@click.group()
def groups() -> None:
    """Manage groups of keys (restricted spaces are open to the members of their groups)."""


@groups.command("create")
@data_dir_option
@click.option("--workspace", required=True)
@click.argument("name")
def groups_create(data_dir: Path | None, workspace: str, name: str) -> None:
    """Create a group; prints its id (last line)."""
    with open_core(settings_for(data_dir)) as core:
        try:
            ws, _ = core.catalog.ensure_workspace(workspace)
            group = core.spaces.create_group(ws, name)
        except AlexandriaError as exc:
            fail(exc.message)
        click.echo(group.sid)


@groups.command("list")
@data_dir_option
@click.option("--workspace", required=True)
def groups_list(data_dir: Path | None, workspace: str) -> None:
    """List the workspace's groups: id, kind, name."""
    with open_core(settings_for(data_dir)) as core:
        try:
            ws = core.catalog.workspace(workspace)
        except AlexandriaError as exc:
            fail(exc.message)
        for g in core.spaces.groups(ws):
            click.echo(f"{g.sid}\t{g.kind.value}\t{g.name}")


@groups.command("add-key")
@data_dir_option
@click.option("--workspace", required=True)
@click.argument("group")
@click.argument("key_id", type=int)
def groups_add_key(data_dir: Path | None, workspace: str, group: str, key_id: int) -> None:
    """Add key KEY_ID (its number in `keys list`) to GROUP (name or id)."""
    with open_core(settings_for(data_dir)) as core:
        try:
            ws = core.catalog.workspace(workspace)
            key = core.keys.get(ws, key_id)
            if key is None:
                fail(f"no key #{key_id} in workspace {ws.sid}")
            g = core.spaces.add_key(ws, group, key)
        except AlexandriaError as exc:
            fail(exc.message)
        err.print(f"key #{key.id} is now a member of {g.name!r}")


@click.command("list")
@data_dir_option
@click.option("--workspace", required=True)
def keys_list(data_dir: Path | None, workspace: str) -> None:
    """List the workspace's keys: number, prefix, role, name, state, groups (secrets are never stored)."""
    with open_core(settings_for(data_dir)) as core:
        try:
            ws = core.catalog.workspace(workspace)
        except AlexandriaError as exc:
            fail(exc.message)
        for k in core.keys.workspace_keys(ws):
            state = "disabled" if k.disabled else "active"
            member_of = sorted(core.spaces.member_of(ws, k))
            click.echo(f"{k.id}\t{k.prefix}…\t{k.role.value}\t{k.name}\t{state}\t{','.join(member_of)}")


@click.command("revoke")
@data_dir_option
@click.option("--workspace", required=True)
@click.argument("key_id", type=int)
def keys_revoke(data_dir: Path | None, workspace: str, key_id: int) -> None:
    """Disable key KEY_ID (its number in `keys list`); it is refused from then on."""
    with open_core(settings_for(data_dir)) as core:
        try:
            ws = core.catalog.workspace(workspace)
        except AlexandriaError as exc:
            fail(exc.message)
        if not core.keys.disable(ws, key_id):
            fail(f"no active key #{key_id} in workspace {ws.sid}")
        err.print(f"key #{key_id} revoked")


@click.group()
def views() -> None:
    """Manage data source views (a custom view shares part of a data source with a space)."""


@views.command("create")
@data_dir_option
@click.option("--workspace", required=True)
@click.option("--data-source", "data_source", required=True, help="Data source id or name.")
@click.option("--space", required=True, help="Space (id or name) the view lives in.")
@click.option("--parent", "parents", multiple=True, help="Node id the view exposes (repeatable; none: empty view).")
def views_create(data_dir: Path | None, workspace: str, data_source: str, space: str, parents: tuple[str, ...]) -> None:
    """Create a custom view; prints its id (last line)."""
    with open_core(settings_for(data_dir)) as core:
        try:
            ws = core.catalog.workspace(workspace)
            ds = core.catalog.data_source(ws, data_source)
            target = core.catalog.space_by_name_or_id(ws, space)
            view = core.spaces.create_view(ws, ds, target, parents)
        except AlexandriaError as exc:
            fail(exc.message)
        click.echo(view.sid)


@views.command("list")
@data_dir_option
@click.option("--workspace", required=True)
def views_list(data_dir: Path | None, workspace: str) -> None:
    """List the workspace's views: id, kind, space, data source, parents."""
    with open_core(settings_for(data_dir)) as core:
        try:
            ws = core.catalog.workspace(workspace)
        except AlexandriaError as exc:
            fail(exc.message)
        spaces_by_id = {s.id: s for s in core.catalog.spaces(ws)}
        sources = {d.id: d for d in core.catalog.data_sources(ws)}
        for v in core.spaces.views(ws):
            parents = "*" if v.parents_in is None else ",".join(v.parents_in)
            click.echo(
                f"{v.sid}\t{v.kind.value}\t{spaces_by_id[v.space_id].name}\t{sources[v.data_source_id].name}\t{parents}"
            )


@views.command("delete")
@data_dir_option
@click.option("--workspace", required=True)
@click.argument("view_id")
def views_delete(data_dir: Path | None, workspace: str, view_id: str) -> None:
    """Delete a custom view (default views live as long as their data source)."""
    with open_core(settings_for(data_dir)) as core:
        try:
            ws = core.catalog.workspace(workspace)
        except AlexandriaError as exc:
            fail(exc.message)
        if not core.spaces.delete_view(ws, view_id):
            fail(f"no custom view {view_id!r} in workspace {ws.sid}")
        err.print(f"view {view_id} deleted")


def register(main: click.Group, keys: click.Group) -> None:
    for group in (spaces, groups, views):
        main.add_command(group)
    keys.add_command(keys_list)
    keys.add_command(keys_revoke)
