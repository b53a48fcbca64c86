"""Dust dialect: `async: true` upserts over the job queue and `check_upsert_queue` (dust-behaviour.md §2.4 item 13,
§2.7, §5.3). The in-process app runs no workers here; tests drive the queue with ``pool.drain()``."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import httpx
import pytest

from alexandria.api.app import create_app
from alexandria.config import Settings
from alexandria.domain.jobs import IndexState, JobState
from alexandria.services.core import Core
from tests.conftest import Tenant, make_tenant
from tests.fakes import HashingEmbedder

pytestmark = [pytest.mark.anyio, pytest.mark.backends("sqlite", "postgres")]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def base(t: Tenant) -> str:
    return f"/api/v1/w/{t.workspace.sid}/spaces/{t.space.sid}/data_sources/{t.ds.sid}"


def legacy(t: Tenant) -> str:
    return f"/api/v1/w/{t.workspace.sid}/data_sources/{t.ds.sid}"


def assert_error(resp: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["type"] == type_
    return dict(body["error"])


async def upsert_async(client: httpx.AsyncClient, t: Tenant, doc_id: str, key: str | None = None, **body: Any) -> Any:
    return await client.post(
        f"{base(t)}/documents/{doc_id}", json={**body, "async": True}, headers=auth(key or t.system_key)
    )


async def queue_count(client: httpx.AsyncClient, t: Tenant) -> int:
    resp = await client.get(f"{base(t)}/check_upsert_queue", headers=auth(t.system_key))
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"running_count"}
    return int(resp.json()["running_count"])


async def search_ids(client: httpx.AsyncClient, t: Tenant, query: str, mode: str = "keyword") -> list[str]:
    resp = await client.get(
        f"{base(t)}/search", params={"query": query, "top_k": 10, "search_mode": mode}, headers=auth(t.key)
    )
    assert resp.status_code == 200, resp.text
    return [d["document_id"] for d in resp.json()["documents"]]


async def test_async_upsert_is_indexed_by_the_worker(client: httpx.AsyncClient, core: Core, tenant: Tenant) -> None:
    resp = await upsert_async(client, tenant, "doc-1", text="zebras graze on the savanna", tags=["animals"])
    assert resp.status_code == 200
    assert resp.json() == {"document": {"document_id": "doc-1"}}
    assert core.embedders.get("fake").calls == []  # type: ignore[attr-defined]  # nothing embedded yet
    assert await queue_count(client, tenant) == 1
    assert await search_ids(client, tenant, "zebras") == []
    assert await search_ids(client, tenant, "zebras", "vector") == []

    assert core.jobs.pool().drain() == 1
    assert await queue_count(client, tenant) == 0
    assert await search_ids(client, tenant, "zebras") == ["doc-1"]
    assert await search_ids(client, tenant, "zebras graze", "vector") == ["doc-1"]
    got = (await client.get(f"{base(tenant)}/documents/doc-1", headers=auth(tenant.key))).json()["document"]
    assert got["text"] == "zebras graze on the savanna" and got["chunk_count"] == 1
    assert "animals" in got["tags"] and "title:doc-1" in got["tags"]


async def test_check_upsert_queue_both_routes_and_system_only(
    client: httpx.AsyncClient, core: Core, tenant: Tenant
) -> None:
    for i in range(3):
        assert (await upsert_async(client, tenant, f"d{i}", text=f"queued note {i}")).status_code == 200
    for root in (base(tenant), legacy(tenant)):
        resp = await client.get(f"{root}/check_upsert_queue", headers=auth(tenant.system_key))
        assert resp.status_code == 200 and resp.json() == {"running_count": 3}
        err = assert_error(
            await client.get(f"{root}/check_upsert_queue", headers=auth(tenant.key)), 403, "data_source_auth_error"
        )
        assert err["message"] == "Only system keys can check the upsert queue."
    missing = f"/api/v1/w/{tenant.workspace.sid}/data_sources/dts_nope/check_upsert_queue"
    assert_error(await client.get(missing, headers=auth(tenant.system_key)), 404, "data_source_not_found")
    # a claimed job still counts until it is done
    (claimed,) = core.store.claim_jobs("worker", 1, 60_000, 10**13)
    assert claimed.state is JobState.RUNNING
    assert await queue_count(client, tenant) == 3
    assert core.jobs.pool().drain() == 2
    assert await queue_count(client, tenant) == 1  # the claimed one is leased to a worker that has not finished
    core.store.complete_job(claimed, "worker", 10**13)
    assert await queue_count(client, tenant) == 0


async def test_other_data_sources_do_not_count(client: httpx.AsyncClient, core: Core, tenant: Tenant) -> None:
    other = core.catalog.create_data_source(tenant.workspace, "other", embedder="fake")
    resp = await client.post(
        f"/api/v1/w/{tenant.workspace.sid}/data_sources/{other.sid}/documents/x",
        json={"text": "elsewhere", "async": True},
        headers=auth(tenant.key),
    )
    assert resp.status_code == 200
    assert await queue_count(client, tenant) == 0
    assert core.jobs.running_count(other) == 1


@pytest.mark.parametrize(
    ("body", "status", "type_"),
    [
        ({}, 400, "invalid_request_error"),
        ({"text": 12}, 400, "invalid_request_error"),
        ({"text": "x", "title": "t" * 513}, 400, "invalid_request_error"),
        ({"text": "x", "source_url": "ftp://example.com/file"}, 400, "invalid_request_error"),
        ({"text": "x", "timestamp": -5}, 400, "invalid_request_error"),
        ({"text": "x", "parents": ["d"]}, 400, "invalid_request_error"),  # builder key: no custom hierarchy
        ({"text": "y" * 20000}, 403, "data_source_quota_error"),  # over the 0.01 MiB test limit
        (  # prefixes over half the chunk size: refused by the chunker, now rather than in the worker
            {"section": {"prefix": " ".join(["p"] * 20), "content": "c", "sections": []}},
            400,
            "invalid_request_error",
        ),
    ],
)
async def test_async_validation_errors_are_immediate(
    client: httpx.AsyncClient, core: Core, tenant: Tenant, body: dict[str, Any], status: int, type_: str
) -> None:
    sync = await client.post(f"{base(tenant)}/documents/d", json=body, headers=auth(tenant.key))
    assert_error(sync, status, type_)
    resp = await upsert_async(client, tenant, "d", key=tenant.key, **body)
    err = assert_error(resp, status, type_)
    assert err == sync.json()["error"]  # the same answer as the synchronous path
    assert await queue_count(client, tenant) == 0
    assert core.store.list_documents(tenant.ds, None, 10, 0)[1] == 0


async def test_async_permission_errors_are_immediate(client: httpx.AsyncClient, core: Core, tenant: Tenant) -> None:
    managed = core.catalog.create_data_source(
        tenant.workspace, "crawler", space=tenant.space, embedder="fake", connector_provider="webcrawler"
    )
    url = f"/api/v1/w/{tenant.workspace.sid}/spaces/{tenant.space.sid}/data_sources/{managed.sid}/documents/p"
    resp = await client.post(url, json={"text": "x", "async": True}, headers=auth(tenant.key))
    err = assert_error(resp, 403, "data_source_auth_error")
    assert err["message"] == "You cannot upsert a document on a managed data source."
    assert core.jobs.running_count(managed) == 0
    ok = await client.post(url, json={"text": "crawled", "async": True}, headers=auth(tenant.system_key))
    assert ok.status_code == 200 and core.jobs.running_count(managed) == 1
    bad = await client.post(f"{base(tenant)}/documents/d", json={"text": "x", "async": "yes"}, headers=auth(tenant.key))
    assert_error(bad, 400, "invalid_request_error")


async def test_two_rapid_async_upserts_index_only_the_second(
    client: httpx.AsyncClient, core: Core, tenant: Tenant
) -> None:
    assert (await upsert_async(client, tenant, "d", text="aardvark first version")).status_code == 200
    assert (await upsert_async(client, tenant, "d", text="bumblebee second version")).status_code == 200
    assert await queue_count(client, tenant) == 1  # the first job was retired by the second
    core.jobs.pool().drain()
    assert await queue_count(client, tenant) == 0
    assert await search_ids(client, tenant, "aardvark") == []
    assert await search_ids(client, tenant, "bumblebee") == ["d"]
    rows = core.store.chunks_of_documents([core.store.document_index_info(tenant.ds, "d").pk])  # type: ignore[union-attr]
    assert [c.text for c in rows] == ["bumblebee second version"]
    assert len(core.embedders.get("fake").calls) == 1  # type: ignore[attr-defined]


async def test_a_deleted_documents_pending_job_does_nothing(
    client: httpx.AsyncClient, core: Core, tenant: Tenant
) -> None:
    assert (await upsert_async(client, tenant, "gone", text="ephemeral words")).status_code == 200
    assert (await upsert_async(client, tenant, "late", text="claimed then deleted")).status_code == 200
    (claimed,) = core.store.claim_jobs("worker", 1, 60_000, 10**13)  # "gone"'s job, now in a worker's hands
    for doc_id in ("gone", "late"):
        resp = await client.delete(f"{base(tenant)}/documents/{doc_id}", headers=auth(tenant.key))
        assert resp.status_code == 200
    assert await queue_count(client, tenant) == 1  # the queued job was retired; the claimed one is in flight
    assert core.documents.run_index_jobs([claimed]) == [None]
    assert core.jobs.pool().drain() == 0
    assert core.embedders.get("fake").calls == []  # type: ignore[attr-defined]
    assert core.store.document_index_info(tenant.ds, "gone") is None
    assert core.store.list_documents(tenant.ds, None, 10, 0)[1] == 0
    assert core.store.chunks_of_documents([1, 2]) == []


async def test_pending_document_is_readable_and_keeps_old_chunks_until_indexed(
    client: httpx.AsyncClient, core: Core, tenant: Tenant
) -> None:
    sync = await client.post(f"{base(tenant)}/documents/d", json={"text": "old walrus text"}, headers=auth(tenant.key))
    assert sync.status_code == 200
    assert (await upsert_async(client, tenant, "d", text="new narwhal text")).status_code == 200
    info = core.store.document_index_info(tenant.ds, "d")
    assert info is not None and info.index_state is IndexState.PENDING
    got = (await client.get(f"{base(tenant)}/documents/d", headers=auth(tenant.key))).json()["document"]
    assert got["text"] == "new narwhal text"
    assert await search_ids(client, tenant, "walrus") == ["d"]  # the previous version stays searchable meanwhile
    assert await search_ids(client, tenant, "narwhal") == []
    core.jobs.pool().drain()
    assert await search_ids(client, tenant, "walrus") == []
    assert await search_ids(client, tenant, "narwhal") == ["d"]


async def test_async_identical_reupsert_queues_nothing(client: httpx.AsyncClient, core: Core, tenant: Tenant) -> None:
    body = {"text": "stable content", "timestamp": 1700000000000, "tags": ["a"]}
    assert (await upsert_async(client, tenant, "s", **body)).status_code == 200
    assert (await upsert_async(client, tenant, "s", **body)).status_code == 200
    assert await queue_count(client, tenant) == 1
    core.jobs.pool().drain()
    assert (await upsert_async(client, tenant, "s", **body)).status_code == 200
    assert await queue_count(client, tenant) == 0
    sync = await client.post(f"{base(tenant)}/documents/s", json=body, headers=auth(tenant.system_key))
    assert sync.status_code == 200 and len(core.embedders.get("fake").calls) == 1  # type: ignore[attr-defined]


async def test_app_owned_core_runs_workers(settings: Settings) -> None:
    """An app built without a core owns one and runs ``settings.workers`` worker threads during its lifespan."""
    app = create_app(settings.model_copy(update={"workers": 1, "job_poll_interval_s": 0.05}))
    core: Core = app.state.core
    core.embedders.register("fake", HashingEmbedder())
    t = make_tenant(core, "w9")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            assert (await upsert_async(c, t, "x", text="worker made this searchable")).status_code == 200
            with anyio.fail_after(10):
                while await queue_count(c, t):
                    await anyio.sleep(0.02)
            assert await search_ids(c, t, "searchable") == ["x"]
    assert not any(th.name.startswith("alexandria-worker") for th in threading.enumerate())
