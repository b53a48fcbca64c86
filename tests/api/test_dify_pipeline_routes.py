"""Dify behaviours Dify's own Python SDK relies on (issue 11 item 7): ``original_document_id`` keeps the document's
batch, the knowledge-pipeline routes answer as Dify answers a dataset without a pipeline, and ids that are not UUIDs
match no route (404, never 405). Also the ``Allow`` header of 405 answers, in both dialects."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from alexandria.api.dify.errors import ROUTE_NOT_FOUND
from alexandria.services.core import Core
from tests.api.dify_helpers import (
    assert_dify_error,
    auth,
    create_dataset,
    create_document,
    dify,  # noqa: F401  (a pytest fixture)
    workspace_key,
)
from tests.conftest import Tenant

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dify"), pytest.mark.backends("sqlite", "postgres")]

DATA = json.dumps({"indexing_technique": "high_quality", "process_rule": {"mode": "automatic"}})


async def by_file(
    client: httpx.AsyncClient, key: str, ds: str, name: str, content: bytes, **data: str
) -> httpx.Response:
    body = json.dumps({**json.loads(DATA), **data})
    return await client.post(
        f"/v1/datasets/{ds}/document/create_by_file",
        files={"file": (name, content)},
        data={"data": body},
        headers=auth(key),
    )


async def test_create_by_file_with_original_document_id_keeps_its_batch(client: httpx.AsyncClient, core: Core) -> None:
    key = workspace_key(core, "w1")
    ds = (await create_dataset(client, key, "kb"))["id"]
    first = await by_file(client, key, ds, "a.md", b"# A\n\nMitochondria make ATP.")
    assert first.status_code == 200, first.text
    doc, batch = first.json()["document"]["id"], first.json()["batch"]
    core.jobs.pool(0).drain()

    replaced = await by_file(client, key, ds, "b.md", b"# B\n\nChloroplasts make sugar.", original_document_id=doc)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["batch"] == batch
    assert replaced.json()["document"]["id"] == doc
    assert replaced.json()["document"]["name"] == "b.md"
    listed = (await client.get(f"/v1/datasets/{ds}/documents", headers=auth(key))).json()
    assert [d["id"] for d in listed["data"]] == [doc]
    status = await client.get(f"/v1/datasets/{ds}/documents/{batch}/indexing-status", headers=auth(key))
    assert status.status_code == 200 and [d["id"] for d in status.json()["data"]] == [doc]

    missing = await by_file(client, key, ds, "c.md", b"x", original_document_id="0" * 8 + "-0000-0000-0000-" + "0" * 12)
    assert_dify_error(missing, 404, "not_found")


async def test_create_by_text_with_original_document_id_keeps_its_batch(client: httpx.AsyncClient, core: Core) -> None:
    key = workspace_key(core, "w1")
    ds = (await create_dataset(client, key, "kb"))["id"]
    made = await create_document(client, key, ds, "a", "Mitochondria make ATP.")
    core.jobs.pool(0).drain()
    again = await client.post(
        f"/v1/datasets/{ds}/document/create_by_text",
        json={"name": "a2", "text": "Chloroplasts make sugar.", "original_document_id": made["document"]["id"]},
        headers=auth(key),
    )
    assert again.status_code == 200, again.text
    assert again.json()["batch"] == made["batch"]
    assert again.json()["document"]["id"] == made["document"]["id"]
    assert again.json()["document"]["name"] == "a2"


async def test_pipeline_routes_answer_as_for_a_dataset_without_pipeline(client: httpx.AsyncClient, core: Core) -> None:
    key = workspace_key(core, "w1")
    ds = (await create_dataset(client, key, "kb"))["id"]
    base = f"/v1/datasets/{ds}/pipeline"
    body = {"inputs": {}, "datasource_type": "local_file", "is_published": True}
    for resp in (
        await client.get(f"{base}/datasource-plugins", params={"is_published": "true"}, headers=auth(key)),
        await client.post(f"{base}/datasource/nodes/n1/run", json=body, headers=auth(key)),
        await client.post(
            f"{base}/run",
            json={**body, "datasource_info_list": [], "start_node_id": "n1", "response_mode": "blocking"},
            headers=auth(key),
        ),
    ):
        assert_dify_error(resp, 400, "invalid_param", "Pipeline not found")
    unknown = "0" * 8 + "-0000-0000-0000-" + "0" * 12
    assert_dify_error(
        await client.get(f"/v1/datasets/{unknown}/pipeline/datasource-plugins", headers=auth(key)), 404, "not_found"
    )
    assert_dify_error(await client.post(f"{base}/run", json={}), 401, "unauthorized")


async def test_pipeline_file_upload(client: httpx.AsyncClient, core: Core) -> None:
    key = workspace_key(core, "w1")
    url = "/v1/datasets/pipeline/file-upload"
    resp = await client.post(url, files={"file": ("notes.md", b"# Notes")}, headers=auth(key))
    assert resp.status_code == 201, resp.text
    out = resp.json()
    assert set(out) == {"id", "name", "size", "extension", "mime_type", "created_by", "created_at"}
    assert (out["name"], out["size"], out["extension"]) == ("notes.md", 7, "md")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", out["created_at"])
    ws, _ = core.catalog.ensure_workspace("w1")
    stored = core.dify.uploaded_file(ws.id, out["id"])
    assert stored is not None and stored[1] == b"# Notes"

    assert_dify_error(await client.post(url, headers=auth(key)), 400, "no_file_uploaded")
    bad = await client.post(url, files={"file": ("x.exe", b"MZ")}, headers=auth(key))
    assert_dify_error(bad, 415, "unsupported_file_type")


async def test_ids_that_are_not_uuids_match_no_dify_route(client: httpx.AsyncClient, core: Core) -> None:
    key = workspace_key(core, "w1")
    ds = (await create_dataset(client, key, "kb"))["id"]
    for method, path in (
        ("POST", "/v1/datasets/from-template"),
        ("PUT", "/v1/datasets/not-a-uuid"),
        ("POST", f"/v1/datasets/{ds}/documents/not-a-uuid"),
    ):
        resp = await client.request(method, path, headers=auth(key))
        assert_dify_error(resp, 404, "not_found", ROUTE_NOT_FOUND)
        assert "allow" not in resp.headers
    # a real id with a method the route lacks is still 405, with the methods it has
    resp = await client.put(f"/v1/datasets/{ds}", headers=auth(key))
    assert_dify_error(resp, 405, "method_not_allowed")
    assert resp.headers["allow"] == "DELETE, GET, PATCH"


async def test_dust_405_carries_allow(client: httpx.AsyncClient, tenant: Tenant) -> None:
    url = f"/api/v1/w/{tenant.workspace.sid}/spaces/{tenant.space.sid}/data_sources/{tenant.ds.sid}/documents/d1"
    resp = await client.put(url, headers=auth(tenant.key))
    assert resp.status_code == 405
    assert resp.json() == {
        "error": {"type": "method_not_supported_error", "message": "The method passed is not supported."}
    }
    assert resp.headers["allow"] == "DELETE, GET, POST"
