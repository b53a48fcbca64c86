"""Dify's file routes: a document's signed download URL and the download itself, the v1 upload-file info, several
documents' files as one ZIP, and the models a knowledge base can use (dify-behaviour.md §2.2 items 16-18, 35)."""

from __future__ import annotations

import io
import time
import zipfile
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from alexandria.api.dify.files import SECRET_NAME, _signature
from alexandria.services.core import Core
from tests.api.dify_helpers import (
    assert_dify_error,
    auth,
    create_dataset,
    create_document,
    dify,  # noqa: F401  (a pytest fixture)
    workspace_key,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dify"), pytest.mark.backends("sqlite", "postgres")]


async def upload(client: httpx.AsyncClient, key: str, ds: str, name: str, data: bytes) -> str:
    resp = await client.post(
        f"/v1/datasets/{ds}/document/create-by-file",
        files={"file": (name, data)},
        data={"data": '{"indexing_technique": "high_quality", "process_rule": {"mode": "automatic"}}'},
        headers=auth(key),
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["document"]["id"])


async def test_signed_download_of_a_documents_file(client: httpx.AsyncClient, core: Core) -> None:
    key = workspace_key(core, "w1")
    ds = (await create_dataset(client, key, "kb"))["id"]
    doc = await upload(client, key, ds, "notes é.md", b"# Notes\n\nPhotosynthesis makes sugar.")
    resp = await client.get(f"/v1/datasets/{ds}/documents/{doc}/download", headers=auth(key))
    assert resp.status_code == 200 and set(resp.json()) == {"url"}
    url = urlsplit(resp.json()["url"])
    got = await client.get(f"{url.path}?{url.query}")  # no key: the signature is the credential
    assert got.status_code == 200
    assert got.content == b"# Notes\n\nPhotosynthesis makes sugar."
    assert got.headers["content-type"].startswith("text/markdown")
    assert "notes%20%C3%A9.md" in got.headers["content-disposition"]

    params = {k: v[0] for k, v in parse_qs(url.query).items()}
    tampered = await client.get(url.path, params={**params, "sign": "0" * 64})
    assert_dify_error(tampered, 403, "forbidden")
    other_file = await client.get(url.path.replace(url.path.split("/")[3], "0" * 8), params=params)
    assert other_file.status_code == 403  # the signature names the file
    expired_at = int(time.time()) - 1
    sign = _signature(core, url.path.split("/")[3], int(params["workspace"]), expired_at)
    expired = await client.get(url.path, params={**params, "expires": str(expired_at), "sign": sign})
    assert_dify_error(expired, 403, "forbidden")
    assert core.store.instance_secret(SECRET_NAME) == core.store.instance_secret(SECRET_NAME)

    info = await client.get(f"/v1/datasets/{ds}/documents/{doc}/upload-file", headers=auth(key))
    assert info.status_code == 200
    body = info.json()
    assert set(body) == {"id", "name", "size", "extension", "url", "download_url", "mime_type", "created_by",
                         "created_at"}  # fmt: skip
    assert (body["name"], body["extension"], body["size"]) == ("notes é.md", "md", 36)
    assert body["download_url"] == body["url"] + "&as_attachment=true"
    assert isinstance(body["created_at"], float)

    text_doc = (await create_document(client, key, ds, "typed", "Typed text."))["document"]["id"]
    resp = await client.get(f"/v1/datasets/{ds}/documents/{text_doc}/download", headers=auth(key))
    assert_dify_error(resp, 404, "not_found", "Document does not have an uploaded file to download.")
    resp = await client.get(f"/v1/datasets/{ds}/documents/{'0' * 8}/download", headers=auth(key))
    assert_dify_error(resp, 404, "not_found")


async def test_files_of_another_workspace_are_unreachable(client: httpx.AsyncClient, core: Core) -> None:
    a, b = workspace_key(core, "wa"), workspace_key(core, "wb")
    ds_a = (await create_dataset(client, a, "kb"))["id"]
    doc = await upload(client, a, ds_a, "secret.txt", b"workspace A only")
    resp = await client.get(f"/v1/datasets/{ds_a}/documents/{doc}/download", headers=auth(b))
    assert_dify_error(resp, 404, "not_found", "Dataset not found.")
    url = urlsplit((await client.get(f"/v1/datasets/{ds_a}/documents/{doc}/download", headers=auth(a))).json()["url"])
    params = {k: v[0] for k, v in parse_qs(url.query).items()}
    ws_b = core.catalog.workspace("wb")
    file_id = url.path.split("/")[3]
    forged = _signature(core, file_id, ws_b.id, int(params["expires"]))  # a valid link, but for workspace B
    resp = await client.get(url.path, params={**params, "workspace": str(ws_b.id), "sign": forged})
    assert_dify_error(resp, 404, "not_found")


async def test_download_zip(client: httpx.AsyncClient, core: Core) -> None:
    key = workspace_key(core, "w1")
    ds = (await create_dataset(client, key, "kb"))["id"]
    first = await upload(client, key, ds, "a.txt", b"alpha")
    second = await upload(client, key, ds, "b.csv", b"x,y\n1,2\n")
    resp = await client.post(f"/v1/datasets/{ds}/documents/download-zip", json={"document_ids": [first, second]},
                             headers=auth(key))  # fmt: skip
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(resp.content)) as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == {"a.txt": b"alpha", "b.csv": b"x,y\n1,2\n"}

    text_doc = (await create_document(client, key, ds, "typed", "Typed text."))["document"]["id"]
    resp = await client.post(f"/v1/datasets/{ds}/documents/download-zip", json={"document_ids": [first, text_doc]},
                             headers=auth(key))  # fmt: skip
    assert_dify_error(resp, 404, "not_found", "Only uploaded-file documents can be downloaded as ZIP.")
    for bad in ([], ["x"] * 101, "nope"):
        resp = await client.post(f"/v1/datasets/{ds}/documents/download-zip", json={"document_ids": bad},
                                 headers=auth(key))  # fmt: skip
        assert_dify_error(resp, 400, "invalid_param")


async def test_available_models(client: httpx.AsyncClient, core: Core) -> None:
    key = workspace_key(core, "w1")
    resp = await client.get("/v1/workspaces/current/models/model-types/text-embedding", headers=auth(key))
    assert resp.status_code == 200
    [provider] = resp.json()["data"]
    assert provider["provider"] == "alexandria" and provider["status"] == "active"
    model, *optional = provider["models"]
    assert model["model"] == "fake" and model["model_type"] == "text-embedding"  # the test's registered embedder
    # the installed multilingual model is offered too (the dev extra installs it), without being loaded
    assert [m["model"] for m in optional] == [name for name, _ in core.embedders.optional_models()]
    resp = await client.get("/v1/workspaces/current/models/model-types/rerank", headers=auth(key))
    assert resp.json() == {"data": []}  # no reranker configured
    resp = await client.get("/v1/workspaces/current/models/model-types/telepathy", headers=auth(key))
    assert_dify_error(resp, 400, "invalid_param")
    resp = await client.get("/v1/workspaces/current/models/model-types/rerank")
    assert_dify_error(resp, 401, "unauthorized")
