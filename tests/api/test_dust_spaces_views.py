"""Dust dialect: spaces and groups, permissions, data source views, folders, tokenize and the upsert rate limit
(dust-behaviour.md §1.3, §2.1-2.3, §2.9, §5)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from alexandria.domain.models import Role, SpaceKind
from alexandria.services.core import Core
from alexandria.services.ratelimit import RateLimits
from tests.api.test_dust_documents import DATA_SOURCE_KEYS, SPACE_KEYS, assert_error, auth
from tests.conftest import Tenant

pytestmark = [pytest.mark.anyio, pytest.mark.backends("sqlite", "postgres")]

VIEW_KEYS = {"category", "createdAt", "dataSource", "id", "kind", "parentsIn", "sId", "updatedAt", "spaceId"}
FOLDER_KEYS = {
    "data_source_id", "folder_id", "title", "parents", "parent_id", "mime_type", "source_url", "provider_visibility",
    "timestamp", "created",
}  # fmt: skip


def w(t: Tenant) -> str:
    return f"/api/v1/w/{t.workspace.sid}"


async def put_doc(client: httpx.AsyncClient, url: str, key: str, **body: Any) -> httpx.Response:
    return await client.post(url, json=body, headers=auth(key))


# --- spaces and permissions --------------------------------------------------------------------------------------
async def test_spaces_list_only_what_the_key_can_read(client: httpx.AsyncClient, core: Core, tenant: Tenant) -> None:
    ws = tenant.workspace
    core.spaces.create_group(ws, "legal")
    open_space = core.spaces.create_space(ws, "Engineering", restricted=False)
    secret = core.spaces.create_space(ws, "Legal", restricted=True, groups=["legal"])
    member, member_secret = core.keys.create(ws, Role.BUILDER, "legal member")
    core.spaces.add_key(ws, "legal", member)
    core.store.ensure_system_space(ws)

    resp = await client.get(f"{w(tenant)}/spaces", headers=auth(tenant.key))
    assert resp.status_code == 200
    spaces = {s["sId"]: s for s in resp.json()["spaces"]}
    assert set(spaces) == {tenant.space.sid, open_space.sid}  # neither the restricted nor the system space
    assert all(set(s) == SPACE_KEYS for s in spaces.values())
    assert spaces[open_space.sid]["kind"] == "regular" and spaces[open_space.sid]["isRestricted"] is False
    global_group = spaces[tenant.space.sid]["groupIds"]
    assert len(global_group) == 1 and global_group[0].startswith("grp_")
    assert spaces[open_space.sid]["groupIds"] == global_group

    as_member = await client.get(f"{w(tenant)}/spaces", headers=auth(member_secret))
    member_view = {s["sId"]: s for s in as_member.json()["spaces"]}
    assert set(member_view) == {tenant.space.sid, open_space.sid, secret.sid}
    assert member_view[secret.sid]["isRestricted"] is True
    assert member_view[secret.sid]["groupIds"] == [core.spaces.group(ws, "legal").sid]

    as_system = await client.get(f"{w(tenant)}/spaces", headers=auth(tenant.system_key))
    assert {s["kind"] for s in as_system.json()["spaces"]} == {"global", "regular", "system"}
    only_regular = await client.get(f"{w(tenant)}/spaces?kinds=regular", headers=auth(tenant.system_key))
    assert {s["sId"] for s in only_regular.json()["spaces"]} == {open_space.sid, secret.sid}
    vaults = await client.get(f"{w(tenant)}/vaults", headers=auth(tenant.key))  # the legacy name
    assert vaults.status_code == 200 and vaults.json() == {"vaults": resp.json()["spaces"]}


async def test_restricted_space_is_invisible_to_non_members(
    client: httpx.AsyncClient, core: Core, tenant: Tenant
) -> None:
    ws = tenant.workspace
    core.spaces.create_group(ws, "finance")
    space = core.spaces.create_space(ws, "Finance", restricted=True, groups=["finance"])
    ds = core.catalog.create_data_source(ws, "ledgers", space=space, embedder="fake")
    member, member_secret = core.keys.create(ws, Role.BUILDER)
    core.spaces.add_key(ws, "finance", member)
    base = f"{w(tenant)}/spaces/{space.sid}/data_sources/{ds.sid}"

    # a builder outside the group: the space does not exist for it, whatever the route
    assert_error(await client.get(f"{w(tenant)}/spaces/{space.sid}/data_sources", headers=auth(tenant.key)), 404,
                 "space_not_found")  # fmt: skip
    assert_error(await put_doc(client, f"{base}/documents/d1", tenant.key, text="q3 revenue"), 404, "space_not_found")
    assert_error(await client.get(f"{base}/search?query=x&top_k=3", headers=auth(tenant.key)), 404, "space_not_found")
    # nor through the legacy route (global space) by id or name
    legacy = f"{w(tenant)}/data_sources/ledgers/documents/d1"
    assert_error(await put_doc(client, legacy, tenant.key, text="x"), 404, "data_source_not_found")

    # a member reads and writes
    ok = await put_doc(client, f"{base}/documents/d1", member_secret, text="q3 revenue grew")
    assert ok.status_code == 200, ok.text
    listed = await client.get(f"{w(tenant)}/spaces/{space.sid}/data_sources", headers=auth(member_secret))
    assert [d["sId"] for d in listed.json()["data_sources"]] == [ds.sid]
    found = await client.get(f"{base}/search?query=revenue&top_k=3", headers=auth(member_secret))
    assert [d["document_id"] for d in found.json()["documents"]] == ["d1"]

    # a system key may narrow its groups with X-Dust-Group-Ids: without the finance group it cannot see the space
    other_group = core.spaces.create_group(ws, "other")
    narrowed = {**auth(tenant.system_key), "X-Dust-Group-Ids": other_group.sid}
    assert_error(await client.get(f"{base}/documents/d1", headers=narrowed), 404, "space_not_found")
    full = await client.get(f"{base}/documents/d1", headers=auth(tenant.system_key))
    assert full.status_code == 200
    # the refused writes stored nothing
    assert core.store.list_documents(ds, None, 10, 0)[1] == 1


async def test_managed_data_sources(client: httpx.AsyncClient, core: Core, tenant: Tenant) -> None:
    ws = tenant.workspace
    # as in Dust, a managed data source lives in the system space, which only system keys can reach
    managed = core.catalog.create_data_source(ws, "slack", embedder="fake", connector_provider="slack")
    system_space = core.store.get_space_by_id(managed.space_id)
    assert system_space is not None and system_space.kind is SpaceKind.SYSTEM
    sys_base = f"{w(tenant)}/spaces/{system_space.sid}/data_sources/{managed.sid}"
    assert_error(await put_doc(client, f"{sys_base}/documents/m", tenant.key, text="x"), 404, "space_not_found")
    ok = await put_doc(client, f"{sys_base}/documents/m", tenant.system_key, text="standup notes")
    assert ok.status_code == 200, ok.text
    # legacy route: a system key reaches the data source in its own space
    legacy = await client.get(f"{w(tenant)}/data_sources/{managed.sid}/documents/m", headers=auth(tenant.system_key))
    assert legacy.status_code == 200

    # a managed data source placed in a readable space still refuses writes from non-system keys (403)
    shared = core.catalog.create_data_source(
        ws, "crawler", space=tenant.space, embedder="fake", connector_provider="webcrawler"
    )
    url = f"{w(tenant)}/spaces/{tenant.space.sid}/data_sources/{shared.sid}/documents/page"
    err = assert_error(await put_doc(client, url, tenant.key, text="x"), 403, "data_source_auth_error")
    assert err["message"] == "You cannot upsert a document on a managed data source."
    err = assert_error(await client.delete(url, headers=auth(tenant.key)), 403, "data_source_auth_error")
    assert err["message"] == "You cannot delete a document from a managed data source."
    assert (await put_doc(client, url, tenant.system_key, text="crawled page")).status_code == 200
    assert (await client.get(url, headers=auth(tenant.key))).status_code == 200  # reading is allowed


async def test_other_workspace_and_user_keys_are_refused_everywhere(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    view = await client.get(f"{w(tenant)}/spaces/{tenant.space.sid}/data_source_views", headers=auth(tenant.key))
    view_id = view.json()["dataSourceViews"][0]["sId"]
    ds_base = f"{w(tenant)}/data_sources/{tenant.ds.sid}"
    requests = [
        ("GET", f"{w(tenant)}/spaces", None),
        ("GET", f"{w(tenant)}/spaces/{tenant.space.sid}/data_source_views", None),
        ("GET", f"{w(tenant)}/spaces/{tenant.space.sid}/data_source_views/{view_id}", None),
        ("PATCH", f"{w(tenant)}/spaces/{tenant.space.sid}/data_source_views/{view_id}", {"parentsToAdd": []}),
        ("GET", f"{w(tenant)}/spaces/{tenant.space.sid}/data_source_views/{view_id}/search?query=a&top_k=1", None),
        ("POST", f"{ds_base}/folders/f1", {"timestamp": 1, "title": "F", "mime_type": "x"}),
        ("DELETE", f"{ds_base}/folders/f1", None),
        ("POST", f"{ds_base}/tokenize", {"text": "hello"}),
    ]
    for key in (other_tenant.key, other_tenant.system_key, tenant.user_key):
        for method, url, body in requests:
            resp = await client.request(method, url, json=body, headers=auth(key))
            assert_error(resp, 401, "workspace_auth_error")


# --- data source views -------------------------------------------------------------------------------------------
async def test_default_views_shapes_and_errors(client: httpx.AsyncClient, core: Core, tenant: Tenant) -> None:
    second = core.catalog.create_data_source(tenant.workspace, "second", embedder="fake")
    views_url = f"{w(tenant)}/spaces/{tenant.space.sid}/data_source_views"
    resp = await client.get(views_url, headers=auth(tenant.key))
    assert resp.status_code == 200 and set(resp.json()) == {"dataSourceViews"}
    views = resp.json()["dataSourceViews"]
    assert [v["dataSource"]["sId"] for v in views] == [tenant.ds.sid, second.sid]
    for v in views:
        assert set(v) == VIEW_KEYS and set(v["dataSource"]) == DATA_SOURCE_KEYS
        assert v["kind"] == "default" and v["parentsIn"] is None and v["category"] == "folder"
        assert v["spaceId"] == tenant.space.sid and v["sId"].startswith("dsv_") and isinstance(v["id"], int)

    one = await client.get(f"{views_url}/{views[0]['sId']}", headers=auth(tenant.key))
    assert one.status_code == 200 and one.json() == {"dataSourceView": views[0]}
    assert_error(await client.get(f"{views_url}/dsv_nope", headers=auth(tenant.key)), 404, "data_source_view_not_found")
    # a view addressed through another space is not found
    other = core.spaces.create_space(tenant.workspace, "Other", restricted=False)
    wrong = await client.get(
        f"{w(tenant)}/spaces/{other.sid}/data_source_views/{views[0]['sId']}", headers=auth(tenant.key)
    )
    assert_error(wrong, 404, "data_source_view_not_found")
    # DELETE is not part of Dust's API (405)
    assert_error(await client.delete(f"{views_url}/{views[0]['sId']}", headers=auth(tenant.key)), 405,
                 "method_not_supported_error")  # fmt: skip
    # default views cannot be restricted (Dust answers 500 here; a client mistake gets 400)
    _, admin = core.keys.create(tenant.workspace, Role.ADMIN)
    patched = await client.patch(f"{views_url}/{views[0]['sId']}", json={"parentsToAdd": ["x"]}, headers=auth(admin))
    assert_error(patched, 400, "invalid_request_error")


async def _hierarchy(client: httpx.AsyncClient, tenant: Tenant) -> str:
    """Folders `hr` > `hr/policies`, documents under them (system key), one document at the root."""
    base = f"{w(tenant)}/data_sources/{tenant.ds.sid}"
    key = tenant.system_key
    for folder_id, parents in (("hr", ["hr"]), ("hr/policies", ["hr/policies", "hr"])):
        resp = await client.post(
            f"{base}/folders/{folder_id.replace('/', '%2F')}",
            json={"timestamp": 1700000000000, "title": folder_id, "mime_type": "application/vnd.dust.folder",
                  "parents": parents, "parent_id": parents[1] if len(parents) > 1 else None},
            headers=auth(key),
        )  # fmt: skip
        assert resp.status_code == 200, resp.text
    docs = {
        "leave": ("Parental leave policy: sixteen weeks paid", ["leave", "hr/policies", "hr"], ["policy"]),
        "onboarding": ("Onboarding checklist for new hires", ["onboarding", "hr"], ["howto"]),
        "roadmap": ("Product roadmap for the next quarter", ["roadmap"], ["policy"]),
    }
    for doc_id, (text, parents, tags) in docs.items():
        resp = await put_doc(client, f"{base}/documents/{doc_id}", key, text=text, parents=parents, tags=tags,
                             parent_id=parents[1] if len(parents) > 1 else None)  # fmt: skip
        assert resp.status_code == 200, resp.text
    return base


async def test_custom_view_patch_and_search(client: httpx.AsyncClient, core: Core, tenant: Tenant) -> None:
    await _hierarchy(client, tenant)
    people = core.spaces.create_space(tenant.workspace, "People", restricted=False)
    view = core.spaces.create_view(tenant.workspace, tenant.ds, people, ["hr/policies"])
    _, admin = core.keys.create(tenant.workspace, Role.ADMIN)
    url = f"{w(tenant)}/spaces/{people.sid}/data_source_views/{view.sid}"

    async def ids(query: str = "policy", extra: str = "") -> list[str]:
        resp = await client.get(f"{url}/search?query={query}&top_k=10{extra}", headers=auth(tenant.key))
        assert resp.status_code == 200, resp.text
        return sorted(d["document_id"] for d in resp.json()["documents"])

    got = (await client.get(url, headers=auth(tenant.key))).json()["dataSourceView"]
    assert got["kind"] == "custom" and got["parentsIn"] == ["hr/policies"] and got["spaceId"] == people.sid
    assert await ids() == ["leave"]
    assert await ids("", "") == ["leave"]  # empty query: latest documents, still restricted

    # builders cannot administrate views (401, as Dust)
    refused = await client.patch(url, json={"parentsToAdd": ["hr"]}, headers=auth(tenant.key))
    assert_error(refused, 401, "workspace_auth_error")
    patched = await client.patch(url, json={"parentsToAdd": ["hr", "roadmap"]}, headers=auth(admin))
    assert patched.status_code == 200, patched.text
    assert patched.json()["dataSourceView"]["parentsIn"] == ["hr/policies", "hr", "roadmap"]
    assert await ids() == ["leave", "onboarding", "roadmap"]
    assert await ids("policy", "&tags_in=howto") == ["onboarding"]  # the request's filter AND the view's
    assert await ids("policy", "&parents_not=hr") == ["roadmap"]

    removed = await client.patch(url, json={"parentsToRemove": ["hr", "hr/policies"]}, headers=auth(admin))
    assert removed.json()["dataSourceView"]["parentsIn"] == ["roadmap"]
    assert await ids() == ["roadmap"]

    # parentsIn replaces (a deliberate fix of Dust's silent no-op)
    replaced = await client.patch(url, json={"parentsIn": ["onboarding"]}, headers=auth(admin))
    assert replaced.json()["dataSourceView"]["parentsIn"] == ["onboarding"]
    assert await ids() == ["onboarding"]
    emptied = await client.patch(url, json={"parentsIn": []}, headers=auth(admin))
    assert emptied.json()["dataSourceView"]["parentsIn"] == []
    assert await ids() == []  # an empty custom view exposes nothing

    for bad in ({"parentsToAdd": ["no-such-node"]}, {"parentsIn": ["x"], "parentsToAdd": ["hr"]},
                {"parentsToAdd": "hr"}, {"parentsIn": None}):  # fmt: skip
        assert_error(await client.patch(url, json=bad, headers=auth(admin)), 400, "invalid_request_error")
    assert core.store.get_view(tenant.workspace.id, view.sid).parents_in == ()  # type: ignore[union-attr]


async def test_view_of_managed_source_shares_it_with_a_space(
    client: httpx.AsyncClient, core: Core, tenant: Tenant
) -> None:
    managed = core.catalog.create_data_source(tenant.workspace, "drive", embedder="fake", connector_provider="gdrive")
    legacy = f"{w(tenant)}/data_sources/{managed.sid}"
    for doc_id, parents in (("a", ["a", "shared"]), ("b", ["b", "private"])):
        resp = await put_doc(client, f"{legacy}/documents/{doc_id}", tenant.system_key, text=f"quarterly plan {doc_id}",
                             parents=parents, parent_id=parents[1])  # fmt: skip
        assert resp.status_code == 200, resp.text
    await client.post(f"{legacy}/folders/shared", json={"timestamp": 1, "title": "Shared", "mime_type": "f"},
                      headers=auth(tenant.system_key))  # fmt: skip
    view = core.spaces.create_view(tenant.workspace, managed, tenant.space, ["shared"])
    listed = await client.get(f"{w(tenant)}/spaces/{tenant.space.sid}/data_source_views", headers=auth(tenant.key))
    mine = [v for v in listed.json()["dataSourceViews"] if v["sId"] == view.sid]
    assert mine and mine[0]["category"] == "managed" and mine[0]["dataSource"]["connectorProvider"] == "gdrive"
    resp = await client.get(
        f"{w(tenant)}/spaces/{tenant.space.sid}/data_source_views/{view.sid}/search?query=plan&top_k=5",
        headers=auth(tenant.key),
    )
    assert [d["document_id"] for d in resp.json()["documents"]] == ["a"]
    # the data source itself stays out of reach of the builder key
    assert_error(await client.get(f"{legacy}/documents/a", headers=auth(tenant.key)), 404, "data_source_not_found")


async def test_search_data_source_views_is_for_system_keys(
    client: httpx.AsyncClient, core: Core, tenant: Tenant
) -> None:
    url = f"{w(tenant)}/data_source_views/search"
    assert_error(await client.get(url, headers=auth(tenant.key)), 404, "data_source_view_not_found")
    resp = await client.get(f"{url}?dataSourceId={tenant.ds.sid}&kind=default", headers=auth(tenant.system_key))
    assert resp.status_code == 200
    (view,) = resp.json()["data_source_views"]
    assert set(view) == VIEW_KEYS and view["dataSource"]["sId"] == tenant.ds.sid
    none = await client.get(f"{url}?vaultKind=system", headers=auth(tenant.system_key))
    assert none.json() == {"data_source_views": []}


# --- folders -----------------------------------------------------------------------------------------------------
async def test_folders(client: httpx.AsyncClient, core: Core, tenant: Tenant) -> None:
    base = f"{w(tenant)}/spaces/{tenant.space.sid}/data_sources/{tenant.ds.sid}"
    body = {"timestamp": 1700000000000, "title": "  Reports ", "mime_type": "application/vnd.dust.folder"}
    resp = await client.post(f"{base}/folders/reports", json=body, headers=auth(tenant.key))
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"folder", "data_source"}
    folder = resp.json()["folder"]
    assert set(folder) == FOLDER_KEYS and set(resp.json()["data_source"]) == DATA_SOURCE_KEYS
    assert folder["folder_id"] == "reports" and folder["title"] == "Reports" and folder["parents"] == ["reports"]
    assert folder["parent_id"] is None and folder["data_source_id"] == tenant.ds.core_id
    assert folder["timestamp"] == 1700000000000

    untitled = await client.post(f"{base}/folders/u", json={**body, "title": " "}, headers=auth(tenant.key))
    assert untitled.json()["folder"]["title"] == "Untitled Folder"
    # ids with "/" arrive percent-encoded (the SDK encodeURIComponent's them)
    nested = await client.post(
        f"{base}/folders/a%2Fb", json={**body, "parents": ["a/b", "reports"], "parent_id": "reports"},
        headers=auth(tenant.system_key),
    )  # fmt: skip
    assert nested.status_code == 200 and nested.json()["folder"]["parents"] == ["a/b", "reports"]
    listed = await client.get(f"{base}/folders", headers=auth(tenant.key))
    assert [f["folder_id"] for f in listed.json()["folders"]] == ["a/b", "reports", "u"]
    got = await client.get(f"{base}/folders/a%2Fb", headers=auth(tenant.key))
    assert got.json()["folder"]["parent_id"] == "reports"

    bad_bodies = [
        {"title": "x", "mime_type": "m"},  # timestamp required
        {**body, "title": 3},
        {**body, "mime_type": None},
        {**body, "parents": ["other"]},  # parents only from system keys
    ]
    for bad in bad_bodies:
        assert_error(await client.post(f"{base}/folders/bad", json=bad, headers=auth(tenant.key)), 400,
                     "invalid_request_error")  # fmt: skip
    inconsistent = await client.post(
        f"{base}/folders/bad", json={**body, "parents": ["other"]}, headers=auth(tenant.system_key)
    )
    assert_error(inconsistent, 400, "invalid_request_error")
    assert core.store.get_folder(tenant.ds, "bad") is None

    deleted = await client.delete(f"{base}/folders/reports", headers=auth(tenant.key))
    assert deleted.status_code == 200 and deleted.json() == {"folder": {"folder_id": "reports"}}
    again = await client.delete(f"{base}/folders/reports", headers=auth(tenant.key))
    assert again.status_code == 200
    missing = await client.get(f"{base}/folders/reports", headers=auth(tenant.key))
    assert_error(missing, 404, "data_source_error")


# --- tokenize ----------------------------------------------------------------------------------------------------
async def test_tokenize(client: httpx.AsyncClient, core: Core, tenant: Tenant) -> None:
    url = f"{w(tenant)}/data_sources/{tenant.ds.sid}/tokenize"
    resp = await client.post(url, json={"text": "hello brave new world"}, headers=auth(tenant.key))
    assert resp.status_code == 200 and set(resp.json()) == {"tokens"}
    tokens = resp.json()["tokens"]
    expected = core.embedders.get("fake").tokenizer.tokenize("hello brave new world")
    assert tokens == [[i, piece] for i, piece in expected]
    assert [t[1] for t in tokens] == ["hello", "brave", "new", "world"]
    assert (await client.post(url, json={"text": ""}, headers=auth(tenant.key))).json() == {"tokens": []}
    for bad in ({}, {"text": 5}, [1]):
        assert_error(await client.post(url, json=bad, headers=auth(tenant.key)), 400, "invalid_request_error")


# --- rate limit --------------------------------------------------------------------------------------------------
async def test_upsert_rate_limit_per_workspace(
    client: httpx.AsyncClient, core: Core, tenant: Tenant, other_tenant: Tenant
) -> None:
    now = [1000.0]
    core.rate_limits = RateLimits(3, clock=lambda: now[0])
    url = f"{w(tenant)}/data_sources/{tenant.ds.sid}/documents"
    for i in range(3):
        assert (await put_doc(client, f"{url}/d{i}", tenant.key, text="x")).status_code == 200
    now[0] += 20
    limited = await put_doc(client, f"{url}/d3", tenant.key, text="x")
    err = assert_error(limited, 429, "rate_limit_error")
    assert err["message"] == "You have reached the maximum number of 3 upserts per minute."
    assert limited.headers["retry-after"] == "40"  # the oldest upsert leaves the 60 s window in 40 s
    assert core.store.get_document(tenant.ds, "d3", with_text=False) is None
    # the limit is per workspace, and system keys are exempt
    other = f"{w(other_tenant)}/data_sources/{other_tenant.ds.sid}/documents/d0"
    assert (await put_doc(client, other, other_tenant.key, text="x")).status_code == 200
    assert (await put_doc(client, f"{url}/sys", tenant.system_key, text="x")).status_code == 200
    # deletes and searches are not limited; the window slides
    assert (await client.delete(f"{url}/d0", headers=auth(tenant.key))).status_code == 200
    now[0] += 61
    assert (await put_doc(client, f"{url}/d3", tenant.key, text="x")).status_code == 200
