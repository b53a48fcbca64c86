"""What a key's scope lets it do (services/access.py): a key bound to one data source works on it through both
dialects and sees only it; a group member reaches its restricted space through both dialects. The refusals of every
route are in test_access_matrix.py."""

from __future__ import annotations

import httpx
import pytest

from alexandria.domain.models import Role
from alexandria.services.core import Core
from tests.api.dify_helpers import dify  # noqa: F401  (a pytest fixture)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dify"), pytest.mark.backends("sqlite", "postgres")]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_key_bound_to_a_data_source_works_on_it_and_sees_nothing_else(
    client: httpx.AsyncClient, core: Core
) -> None:
    ws, global_space = core.catalog.ensure_workspace("w1")
    eng = core.spaces.create_space(ws, "Engineering", restricted=False)
    a = core.catalog.create_data_source(ws, "notes-a", embedder="fake")
    b = core.catalog.create_data_source(ws, "notes-b", embedder="fake")
    c = core.catalog.create_data_source(ws, "notes-c", space=eng, embedder="fake")
    shared = core.spaces.create_view(ws, a, eng, ["doc-1"])  # a view of A in another space
    core.spaces.create_view(ws, b, eng, [])
    key, secret = core.keys.create(ws, Role.BUILDER, data_source_id=a.id)
    h = auth(secret)
    w = f"/api/v1/w/{ws.sid}"

    # its own data source: writes, reads and searches, by space route or legacy route (by sId or name)
    url = f"{w}/spaces/{global_space.sid}/data_sources/{a.sid}/documents/doc-1"
    resp = await client.post(url, json={"text": "mitochondria make energy"}, headers=h)
    assert resp.status_code == 200, resp.text
    resp = await client.post(f"{w}/data_sources/notes-a/documents/doc-2", json={"text": "ribosomes"}, headers=h)
    assert resp.status_code == 200, resp.text
    found = await client.get(
        f"{w}/data_sources/{a.sid}/search", params={"query": "energy", "top_k": 3, "search_mode": "keyword"}, headers=h
    )
    assert found.status_code == 200 and found.json()["documents"][0]["document_id"] == "doc-1"
    listed = await client.get(f"{w}/data_sources/{a.sid}/documents", headers=h)
    assert listed.json()["total"] == 2

    # listings show only what it reaches: the spaces holding A or a view of it, A, and the views of A
    spaces = await client.get(f"{w}/spaces", headers=h)
    assert {s["sId"] for s in spaces.json()["spaces"]} == {global_space.sid, eng.sid}
    for path in (f"/spaces/{global_space.sid}/data_sources", "/data_sources"):
        resp = await client.get(w + path, headers=h)
        assert [d["sId"] for d in resp.json()["data_sources"]] == [a.sid]
    assert (await client.get(f"{w}/spaces/{eng.sid}/data_sources", headers=h)).json() == {"data_sources": []}
    views = await client.get(f"{w}/spaces/{eng.sid}/data_source_views", headers=h)
    assert [v["sId"] for v in views.json()["dataSourceViews"]] == [shared.sid]
    search = f"{w}/spaces/{eng.sid}/data_source_views/{shared.sid}/search"
    through_view = await client.get(search, params={"query": "energy", "top_k": 3, "search_mode": "keyword"}, headers=h)
    assert [d["document_id"] for d in through_view.json()["documents"]] == ["doc-1"]

    # B (same space) and C (another space): 404 on Dust, 403 on Dify, and nothing is written
    for url in (f"{w}/data_sources/{b.sid}/documents/x", f"{w}/spaces/{eng.sid}/data_sources/{c.sid}/documents/x"):
        resp = await client.post(url, json={"text": "leak"}, headers=h)
        assert resp.status_code == 404 and resp.json()["error"]["type"] == "data_source_not_found", resp.text
    assert core.store.list_documents(b, None, 10, 0)[1] == 0 and core.store.list_documents(c, None, 10, 0)[1] == 0
    assert (await client.get(f"/v1/datasets/{a.uuid}", headers=h)).json()["id"] == a.uuid
    resp = await client.get(f"/v1/datasets/{b.uuid}", headers=h)
    assert resp.status_code == 403 and resp.json()["code"] == "forbidden"
    models = await client.get("/v1/workspaces/current/models/model-types/text-embedding", headers=h)
    assert models.status_code == 403 and models.json()["code"] == "forbidden"
    assert key.data_source_id == a.id


async def test_a_group_member_reaches_its_restricted_space_through_both_dialects(
    client: httpx.AsyncClient, core: Core
) -> None:
    ws, _ = core.catalog.ensure_workspace("w1")
    core.spaces.create_group(ws, "legal")
    core.spaces.create_group(ws, "finance")
    legal = core.spaces.create_space(ws, "Legal", restricted=True, groups=["legal"])
    finance = core.spaces.create_space(ws, "Finance", restricted=True, groups=["finance"])
    contracts = core.catalog.create_data_source(ws, "contracts", space=legal, embedder="fake")
    ledgers = core.catalog.create_data_source(ws, "ledgers", space=finance, embedder="fake")
    open_ds = core.catalog.create_data_source(ws, "notes", embedder="fake")
    member, secret = core.keys.create(ws, Role.BUILDER)
    core.spaces.add_key(ws, "legal", member)
    h = auth(secret)

    listed = await client.get("/v1/datasets", headers=h)
    assert {d["id"] for d in listed.json()["data"]} == {contracts.uuid, open_ds.uuid}
    assert listed.json()["total"] == 2
    body = {"name": "nda", "text": "a non-disclosure agreement", "indexing_technique": "high_quality"}
    created = await client.post(f"/v1/datasets/{contracts.uuid}/document/create-by-text", json=body, headers=h)
    assert created.status_code == 200, created.text
    refused = await client.post(f"/v1/datasets/{ledgers.uuid}/document/create-by-text", json=body, headers=h)
    assert refused.status_code == 403 and refused.json() == {
        "code": "forbidden",
        "message": "You do not have permission to access this dataset.",
        "status": 403,
    }
    assert core.store.list_documents(ledgers, None, 10, 0)[1] == 0

    url = f"/api/v1/w/{ws.sid}/spaces/{legal.sid}/data_sources/{contracts.sid}/documents"
    assert (await client.get(url, headers=h)).json()["total"] == 1
    url = f"/api/v1/w/{ws.sid}/spaces/{finance.sid}/data_sources/{ledgers.sid}/documents"
    resp = await client.get(url, headers=h)
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "space_not_found"
