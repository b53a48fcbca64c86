"""Dust dialect: exact shapes, status codes and error envelopes (../shared/specs/dust-behaviour.md)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from alexandria.services.core import Core
from tests.conftest import Tenant

pytestmark = [pytest.mark.anyio, pytest.mark.backends("sqlite", "postgres")]

DATA_SOURCE_KEYS = {
    "id", "sId", "createdAt", "name", "description", "dustAPIProjectId", "dustAPIDataSourceId", "connectorId",
    "connectorProvider", "assistantDefaultSelected",
}  # fmt: skip
CORE_DOCUMENT_KEYS = {
    "data_source_id", "data_source_internal_id", "created", "document_id", "timestamp", "title", "mime_type",
    "provider_visibility", "tags", "parent_id", "parents", "source_url", "hash", "text_size", "chunk_count",
    "chunks", "token_count",
}  # fmt: skip
SPACE_KEYS = {"createdAt", "groupIds", "isRestricted", "kind", "managementMode", "name", "sId", "updatedAt"}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def base(t: Tenant) -> str:
    return f"/api/v1/w/{t.workspace.sid}/spaces/{t.space.sid}/data_sources/{t.ds.sid}"


def assert_error(resp: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == type_
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


async def upsert(client: httpx.AsyncClient, t: Tenant, doc_id: str, **body: Any) -> httpx.Response:
    return await client.post(f"{base(t)}/documents/{doc_id}", json=body, headers=auth(t.key))


async def test_spaces_and_data_sources_shapes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    resp = await client.get(f"/api/v1/w/{tenant.workspace.sid}/spaces", headers=auth(tenant.key))
    assert resp.status_code == 200
    spaces = resp.json()["spaces"]
    assert len(spaces) == 1
    assert set(spaces[0]) == SPACE_KEYS
    assert spaces[0]["kind"] == "global" and spaces[0]["sId"] == tenant.space.sid
    assert spaces[0]["isRestricted"] is False

    resp = await client.get(
        f"/api/v1/w/{tenant.workspace.sid}/spaces/{tenant.space.sid}/data_sources", headers=auth(tenant.key)
    )
    assert resp.status_code == 200
    (ds,) = resp.json()["data_sources"]
    assert set(ds) == DATA_SOURCE_KEYS
    assert ds["sId"] == tenant.ds.sid and ds["name"] == "docs" and isinstance(ds["id"], int)
    assert ds["connectorId"] is None and ds["description"] is None

    legacy = await client.get(f"/api/v1/w/{tenant.workspace.sid}/data_sources", headers=auth(tenant.key))
    assert legacy.json() == resp.json()


async def test_upsert_get_list_delete(client: httpx.AsyncClient, tenant: Tenant) -> None:
    text = "the quick brown fox jumps over the lazy dog"
    resp = await upsert(
        client, tenant, "doc-1", text=text, tags=["a"], timestamp=1700000000000, source_url="https://example.com/x",
        title="Fox",
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"document", "data_source"}
    assert set(body["data_source"]) == DATA_SOURCE_KEYS
    doc = body["document"]
    assert set(doc) == CORE_DOCUMENT_KEYS
    assert doc["document_id"] == "doc-1" and doc["title"] == "Fox"
    assert doc["tags"] == ["a", "title:Fox"]
    assert doc["parents"] == ["doc-1"] and doc["parent_id"] is None
    assert doc["timestamp"] == 1700000000000
    assert doc["source_url"] == "https://example.com/x"
    assert doc["mime_type"] == "application/octet-stream"
    assert doc["data_source_id"] == tenant.ds.core_id
    assert doc["chunk_count"] == 1 and len(doc["chunks"]) == 1
    assert doc["chunks"][0]["text"] == "the quick brown fox jumps over the lazy dog"
    assert doc["text_size"] == len("the quick brown fox jumps over the lazy dog")

    got = await client.get(f"{base(tenant)}/documents/doc-1", headers=auth(tenant.key))
    assert got.status_code == 200
    assert set(got.json()) == {"document"}
    gdoc = got.json()["document"]
    assert gdoc["text"] == "the quick brown fox jumps over the lazy dog"
    assert gdoc["chunks"] == [] and gdoc["hash"] == doc["hash"]

    await upsert(client, tenant, "doc-2", text="second", timestamp=1700000000001)
    listed = await client.get(f"{base(tenant)}/documents", headers=auth(tenant.key))
    assert listed.status_code == 200
    assert listed.json()["total"] == 2
    assert [d["document_id"] for d in listed.json()["documents"]] == ["doc-2", "doc-1"]
    assert all("text" not in d and d["chunks"] == [] for d in listed.json()["documents"])
    page = await client.get(f"{base(tenant)}/documents?limit=1&offset=1", headers=auth(tenant.key))
    assert [d["document_id"] for d in page.json()["documents"]] == ["doc-1"] and page.json()["total"] == 2
    some = await client.get(f"{base(tenant)}/documents?document_ids=doc-1&document_ids=nope", headers=auth(tenant.key))
    assert [d["document_id"] for d in some.json()["documents"]] == ["doc-1"]

    deleted = await client.delete(f"{base(tenant)}/documents/doc-1", headers=auth(tenant.key))
    assert deleted.status_code == 200 and deleted.json() == {"document": {"document_id": "doc-1"}}
    again = await client.delete(f"{base(tenant)}/documents/doc-1", headers=auth(tenant.key))
    assert again.status_code == 200  # idempotent
    missing = await client.get(f"{base(tenant)}/documents/doc-1", headers=auth(tenant.key))
    err = assert_error(missing, 400, "data_source_error")
    assert err["data_source_error"]["code"] == "data_source_document_not_found"


async def test_hash_stable_and_changes_with_tags_or_timestamp(
    client: httpx.AsyncClient, tenant: Tenant, core: Core
) -> None:
    first = (await upsert(client, tenant, "d", text="alpha beta", timestamp=5)).json()["document"]["hash"]
    calls = len(core.embedders.get("fake").calls)  # type: ignore[attr-defined]
    same = (await upsert(client, tenant, "d", text="alpha beta", timestamp=5)).json()["document"]["hash"]
    assert same == first
    assert len(core.embedders.get("fake").calls) == calls  # type: ignore[attr-defined]  # no work redone
    retagged = (await upsert(client, tenant, "d", text="alpha beta", timestamp=5, tags=["x"])).json()
    assert retagged["document"]["hash"] != first
    assert len(core.embedders.get("fake").calls) == calls  # type: ignore[attr-defined]  # vectors reused by hash
    moved = (await upsert(client, tenant, "d", text="alpha beta", timestamp=6, tags=["x"])).json()
    assert moved["document"]["hash"] != retagged["document"]["hash"]


async def test_light_output_and_async_shapes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    light = await upsert(client, tenant, "l", text="light body", light_document_output=True)
    assert set(light.json()["document"]) == {"hash", "text_size", "chunk_count", "token_count", "created"}
    asynchronous = await client.post(
        f"{base(tenant)}/documents/a", json={"text": "queued", "async": True}, headers=auth(tenant.key)
    )
    assert asynchronous.status_code == 200 and asynchronous.json() == {"document": {"document_id": "a"}}


async def test_section_upsert_repeats_prefixes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    words = " ".join(f"w{i}" for i in range(60))
    section = {
        "prefix": "Title\n",
        "content": None,
        "sections": [{"prefix": "Part\n", "content": words, "sections": []}],
    }
    resp = await upsert(client, tenant, "s", section=section)
    assert resp.status_code == 200, resp.text
    chunks = resp.json()["document"]["chunks"]
    assert len(chunks) >= 2
    assert all(c["text"].startswith("Title\nPart\n") for c in chunks)
    assert [c["offset"] for c in chunks] == list(range(len(chunks)))


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"text": 12},
        {"text": "x", "timestamp": "yesterday"},
        {"text": "x", "tags": "not-a-list"},
        {"section": {"prefix": None, "content": "x"}},
        {"text": "x", "source_url": "ftp://example.com/file"},
        {"text": "x", "title": "t" * 513},
        {"text": "x", "timestamp": -5},
        {"text": "x", "parents": ["d"]},
        {"text": "x", "parent_id": "p"},
    ],
)
async def test_bad_bodies_get_400_and_store_nothing(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]
) -> None:
    resp = await upsert(client, tenant, "d", **body)
    assert_error(resp, 400, "invalid_request_error")
    listed = await client.get(f"{base(tenant)}/documents", headers=auth(tenant.key))
    assert listed.json()["total"] == 0


async def test_malformed_json_and_non_object(client: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = {**auth(tenant.key), "content-type": "application/json"}
    resp = await client.post(f"{base(tenant)}/documents/d", content=b"{not json", headers=headers)
    assert_error(resp, 400, "invalid_request_error")
    resp = await client.post(f"{base(tenant)}/documents/d", content=b"[1,2]", headers=headers)
    assert_error(resp, 400, "invalid_request_error")


async def test_bad_input_keeps_existing_document(client: httpx.AsyncClient, tenant: Tenant) -> None:
    ok = await upsert(client, tenant, "keep", text="original text")
    bad = await upsert(client, tenant, "keep", text="y" * 20000)  # over the 0.01 MiB test limit
    assert_error(bad, 403, "data_source_quota_error")
    got = await client.get(f"{base(tenant)}/documents/keep", headers=auth(tenant.key))
    assert got.json()["document"]["text"] == "original text"
    assert got.json()["document"]["hash"] == ok.json()["document"]["hash"]


async def test_body_over_limit_is_413(client: httpx.AsyncClient, tenant: Tenant) -> None:
    resp = await upsert(client, tenant, "big", text="z" * 200_000)
    assert resp.status_code == 413
    assert resp.json()["error"]["type"] == "content_too_large"


async def test_system_key_parents(client: httpx.AsyncClient, tenant: Tenant) -> None:
    url = f"{base(tenant)}/documents/child"
    ok = await client.post(
        url, json={"text": "x", "parents": ["child", "folder"], "parent_id": "folder"}, headers=auth(tenant.system_key)
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["document"]["parents"] == ["child", "folder"]
    assert ok.json()["document"]["parent_id"] == "folder"
    bad = await client.post(url, json={"text": "x", "parents": ["other"]}, headers=auth(tenant.system_key))
    assert_error(bad, 400, "invalid_request_error")
    mismatch = await client.post(
        url, json={"text": "x", "parents": ["child", "a"], "parent_id": "b"}, headers=auth(tenant.system_key)
    )
    assert_error(mismatch, 400, "invalid_request_error")

    upd = await client.post(f"{url}/parents", json={"parents": ["child", "f2", "root"]}, headers=auth(tenant.key))
    assert upd.status_code == 200 and upd.json() == {"updated": True}
    got = (await client.get(url, headers=auth(tenant.key))).json()["document"]
    assert got["parents"] == ["child", "f2", "root"] and got["parent_id"] == "f2"
    missing = await client.post(f"{url}/parents", json={}, headers=auth(tenant.key))
    assert_error(missing, 400, "invalid_request_error")
    empty = await client.post(f"{url}/parents", json={"parents": []}, headers=auth(tenant.key))
    assert_error(empty, 400, "invalid_request_error")


async def test_authentication_errors(client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant) -> None:
    url = f"{base(tenant)}/documents"
    assert_error(await client.get(url), 401, "not_authenticated")
    assert_error(await client.get(url, headers={"Authorization": "Token abc"}), 401, "not_authenticated")
    assert_error(await client.get(url, headers=auth("sk-unknown")), 401, "invalid_api_key_error")
    assert_error(await client.get(url, headers=auth(other_tenant.key)), 401, "workspace_auth_error")
    assert_error(await client.get(url, headers=auth(tenant.user_key)), 401, "workspace_auth_error")
    assert_error(await client.get("/api/v1/w/nope/spaces", headers=auth(tenant.key)), 404, "workspace_not_found")


async def test_tenant_isolation(client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant) -> None:
    await upsert(client, tenant, "secret", text="tenant one private text")
    # other workspace's key on tenant's URLs: refused, nothing written
    write = await client.post(f"{base(tenant)}/documents/x", json={"text": "intrusion"}, headers=auth(other_tenant.key))
    assert_error(write, 401, "workspace_auth_error")
    # tenant's data source addressed inside the other workspace: not found
    cross = f"/api/v1/w/{other_tenant.workspace.sid}/spaces/{other_tenant.space.sid}/data_sources/{tenant.ds.sid}"
    assert_error(await client.get(f"{cross}/documents/secret", headers=auth(other_tenant.key)), 404,
                 "data_source_not_found")  # fmt: skip
    assert_error(
        await client.get(f"{cross}/search?query=private&top_k=5", headers=auth(other_tenant.key)),
        404,
        "data_source_not_found",
    )
    wrong_space = f"/api/v1/w/{tenant.workspace.sid}/spaces/{other_tenant.space.sid}/data_sources/{tenant.ds.sid}"
    assert_error(await client.get(f"{wrong_space}/documents", headers=auth(tenant.key)), 404, "space_not_found")
    own = await client.get(f"{base(tenant)}/documents", headers=auth(tenant.key))
    assert [d["document_id"] for d in own.json()["documents"]] == ["secret"]
    theirs = await client.get(
        f"/api/v1/w/{other_tenant.workspace.sid}/spaces/{other_tenant.space.sid}/data_sources/{other_tenant.ds.sid}/documents",
        headers=auth(other_tenant.key),
    )
    assert theirs.json() == {"documents": [], "total": 0}


async def test_unknown_ids_and_methods(client: httpx.AsyncClient, tenant: Tenant) -> None:
    ws = tenant.workspace.sid
    assert_error(
        await client.get(f"/api/v1/w/{ws}/spaces/vlt_nope/data_sources", headers=auth(tenant.key)), 404,
        "space_not_found",
    )  # fmt: skip
    assert_error(
        await client.get(f"/api/v1/w/{ws}/spaces/{tenant.space.sid}/data_sources/dts_nope/documents",
                         headers=auth(tenant.key)),
        404, "data_source_not_found",
    )  # fmt: skip
    assert_error(await client.put(f"{base(tenant)}/documents/x", headers=auth(tenant.key)), 405,
                 "method_not_supported_error")  # fmt: skip
    by_name = await client.get(f"/api/v1/w/{ws}/data_sources/docs/documents", headers=auth(tenant.key))
    assert by_name.status_code == 200


async def test_document_ids_with_slashes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    url = f"{base(tenant)}/documents/folder%2Fnote.md"
    assert (await client.post(url, json={"text": "nested"}, headers=auth(tenant.key))).status_code == 200
    got = await client.get(url, headers=auth(tenant.key))
    assert got.json()["document"]["document_id"] == "folder/note.md"
    upd = await client.post(f"{url}/parents", json={"parents": ["folder/note.md", "folder"]}, headers=auth(tenant.key))
    assert upd.json() == {"updated": True}
    assert (await client.delete(url, headers=auth(tenant.key))).json() == {
        "document": {"document_id": "folder/note.md"}
    }
