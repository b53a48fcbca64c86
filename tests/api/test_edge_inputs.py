"""Client mistakes found by fuzzing (issue 11, item 1) answered with a clear 4xx in each dialect's own envelope, and
nothing stored: out-of-range integers and timestamps, deeply nested JSON, text no store can hold (lone UTF-16
surrogates; NUL, which PostgreSQL refuses), malformed ``retrieval_model`` values and bodies over the limit sent
chunked. Each runs on both stores: the same answer on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from alexandria.api.edge import MAX_JSON_DEPTH
from alexandria.domain.limits import INT64_MAX
from alexandria.services.core import Core
from tests.api.dify_helpers import (
    assert_dify_error,
    auth,
    create_dataset,
    create_document,
    dify,  # noqa: F401  (a pytest fixture)
    workspace_key,
)
from tests.api.test_dust_documents import assert_error, base, upsert
from tests.conftest import Tenant

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dify"), pytest.mark.backends("sqlite", "postgres")]

HUGE_INTS = (str(2**70), "100000000000000000000", str(INT64_MAX + 1), str(-(2**63) - 1))


def nested(depth: int) -> str:
    """A JSON object whose ``x`` holds ``depth`` nested lists (total depth ``depth + 1``)."""
    return '{"x": ' + "[" * depth + "]" * depth + "}"


def section(depth: int) -> str:
    """A Dust upsert body whose ``section`` tree is ``depth`` levels deep (as text: too deep for ``json.dumps``)."""
    head = '{"prefix": null, "content": "c", "sections": ['
    leaf = '{"prefix": null, "content": "leaf", "sections": []}'
    return '{"section": ' + head * (depth - 1) + leaf + "]}" * (depth - 1) + "}"


async def dust_documents(client: httpx.AsyncClient, t: Tenant) -> list[str]:
    resp = await client.get(f"{base(t)}/documents", headers=auth(t.key))
    assert resp.status_code == 200, resp.text
    return sorted(d["document_id"] for d in resp.json()["documents"])


async def dify_dataset(client: httpx.AsyncClient, core: Core) -> tuple[str, str]:
    key = workspace_key(core, "w1")
    ds = (await create_dataset(client, key, "kb"))["id"]
    await create_document(client, key, ds, "first", "Photosynthesis makes sugar from light.")
    core.jobs.pool(0).drain()
    return key, str(ds)


async def dify_documents(client: httpx.AsyncClient, key: str, ds: str) -> list[str]:
    resp = await client.get(f"/v1/datasets/{ds}/documents", headers=auth(key))
    assert resp.status_code == 200, resp.text
    return sorted(d["name"] for d in resp.json()["data"])


# --- retrieval_model.search_method of the wrong type ---------------------------------------------------------------
@pytest.mark.parametrize("route", ["retrieve", "hit-testing"])
@pytest.mark.parametrize("method", [["semantic_search"], {"a": 1}, 3, True])
async def test_dify_search_method_of_the_wrong_type(
    client: httpx.AsyncClient, core: Core, route: str, method: object
) -> None:
    key, ds = await dify_dataset(client, core)
    model = {"search_method": method, "reranking_enable": False, "top_k": 3, "score_threshold_enabled": False}
    resp = await client.post(
        f"/v1/datasets/{ds}/{route}", json={"query": "sugar", "retrieval_model": model}, headers=auth(key)
    )
    assert_dify_error(resp, 400, "invalid_param")


@pytest.mark.parametrize("method", [["semantic_search"], {"a": 1}, 3])
async def test_dify_dataset_search_method_of_the_wrong_type(
    client: httpx.AsyncClient, core: Core, method: object
) -> None:
    key, ds = await dify_dataset(client, core)
    model = {"search_method": method, "reranking_enable": False, "top_k": 3, "score_threshold_enabled": False}
    resp = await client.post("/v1/datasets", json={"name": "other", "retrieval_model": model}, headers=auth(key))
    assert_dify_error(resp, 400, "invalid_param")
    before = (await client.get(f"/v1/datasets/{ds}", headers=auth(key))).json()
    resp = await client.patch(f"/v1/datasets/{ds}", json={"retrieval_model": model}, headers=auth(key))
    assert_dify_error(resp, 400, "invalid_param")
    assert (await client.get(f"/v1/datasets/{ds}", headers=auth(key))).json() == before


@pytest.mark.parametrize("weights", [{"vector_setting": [1]}, {"keyword_setting": "x"}, []])
async def test_dify_hybrid_weights_of_the_wrong_type(client: httpx.AsyncClient, core: Core, weights: object) -> None:
    key, ds = await dify_dataset(client, core)
    model = {
        "search_method": "hybrid_search",
        "reranking_enable": False,
        "top_k": 3,
        "score_threshold_enabled": False,
        "weights": weights,
    }
    resp = await client.post(
        f"/v1/datasets/{ds}/retrieve", json={"query": "sugar", "retrieval_model": model}, headers=auth(key)
    )
    assert_dify_error(resp, 400, "invalid_param")


# --- integers beyond a signed 64-bit range -------------------------------------------------------------------------
@pytest.mark.parametrize("timestamp", ["1e308", str(2**70), "1e19", str(INT64_MAX + 1), "1e400"])
async def test_dust_timestamp_beyond_range(client: httpx.AsyncClient, tenant: Tenant, timestamp: str) -> None:
    body = '{"text": "hello", "timestamp": ' + timestamp + "}"
    resp = await client.post(
        f"{base(tenant)}/documents/d1",
        content=body,
        headers={**auth(tenant.key), "Content-Type": "application/json"},
    )
    assert_error(resp, 400, "invalid_request_error")
    assert await dust_documents(client, tenant) == []


async def test_dust_largest_timestamp_is_kept(client: httpx.AsyncClient, tenant: Tenant) -> None:
    resp = await upsert(client, tenant, "d1", text="hello", timestamp=INT64_MAX)
    assert resp.status_code == 200, resp.text
    assert resp.json()["document"]["timestamp"] == INT64_MAX
    got = await client.get(f"{base(tenant)}/documents/d1", headers=auth(tenant.key))
    assert got.json()["document"]["timestamp"] == INT64_MAX


@pytest.mark.parametrize("path", ["folders/f1", "tables/t1"])
async def test_dust_folder_and_table_timestamp_beyond_range(
    client: httpx.AsyncClient, tenant: Tenant, path: str
) -> None:
    kind = path.split("/")[0]
    body: dict[str, Any] = {"timestamp": 1e308, "title": "T", "mime_type": "text/plain"}
    if kind == "tables":
        body = {"name": "t", "description": "d", "timestamp": 1e308, "table_id": "t1"}
        resp = await client.post(f"{base(tenant)}/tables", json=body, headers=auth(tenant.system_key))
    else:
        resp = await client.post(f"{base(tenant)}/{path}", json=body, headers=auth(tenant.system_key))
    assert_error(resp, 400, "invalid_request_error")
    listed = await client.get(f"{base(tenant)}/{kind}", headers=auth(tenant.system_key))
    assert listed.json()[kind] == []


@pytest.mark.parametrize("param", ["limit", "offset"])
@pytest.mark.parametrize("value", HUGE_INTS[:3])
async def test_dust_list_limit_beyond_range(client: httpx.AsyncClient, tenant: Tenant, param: str, value: str) -> None:
    for path in ("documents", "tables/t1/rows"):
        resp = await client.get(f"{base(tenant)}/{path}", params={param: value}, headers=auth(tenant.key))
        assert_error(resp, 400, "invalid_request_error")


@pytest.mark.parametrize("param", ["timestamp_gt", "timestamp_lt", "top_k", "target_document_tokens"])
async def test_dust_search_numbers_beyond_range(client: httpx.AsyncClient, tenant: Tenant, param: str) -> None:
    resp = await client.get(
        f"{base(tenant)}/search", params={"query": "x", "top_k": "3", param: "1e300"}, headers=auth(tenant.key)
    )
    assert_error(resp, 400, "invalid_request_error")


@pytest.mark.parametrize("param", ["page", "limit"])
@pytest.mark.parametrize("value", HUGE_INTS[:3])
async def test_dify_page_beyond_range(client: httpx.AsyncClient, core: Core, param: str, value: str) -> None:
    key, ds = await dify_dataset(client, core)
    for path in (f"/v1/datasets/{ds}/documents", "/v1/datasets"):
        resp = await client.get(path, params={param: value}, headers=auth(key))
        assert_dify_error(resp, 400, "invalid_param")


@pytest.mark.parametrize("value", HUGE_INTS)
async def test_integer_literals_beyond_range_in_any_body(client: httpx.AsyncClient, core: Core, value: str) -> None:
    key, ds = await dify_dataset(client, core)
    body = '{"name": "second", "text": "More text.", "indexing_technique": "high_quality", "x": ' + value + "}"
    resp = await client.post(
        f"/v1/datasets/{ds}/document/create-by-text",
        content=body,
        headers={**auth(key), "Content-Type": "application/json"},
    )
    assert_dify_error(resp, 400, "invalid_param")
    assert await dify_documents(client, key, ds) == ["first"]


# --- nesting -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 480, 20_000])
async def test_dust_deep_json(client: httpx.AsyncClient, tenant: Tenant, depth: int) -> None:
    resp = await client.post(
        f"{base(tenant)}/documents/d1",
        content='{"text": "hi", "tags": ' + nested(depth)[6:-1] + "}",
        headers={**auth(tenant.key), "Content-Type": "application/json"},
    )
    err = assert_error(resp, 400, "invalid_request_error")
    assert f"{MAX_JSON_DEPTH}" in err["message"]
    assert await dust_documents(client, tenant) == []


async def test_dust_deep_section_tree(client: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = {**auth(tenant.key), "Content-Type": "application/json"}
    for depth in ((MAX_JSON_DEPTH + 1) // 2, 480, 900):
        resp = await client.post(f"{base(tenant)}/documents/d1", content=section(depth), headers=headers)
        assert_error(resp, 400, "invalid_request_error")
    assert await dust_documents(client, tenant) == []
    # the deepest tree the bound allows (each level is an object and its ``sections`` list) is indexed
    deepest = (MAX_JSON_DEPTH - 1) // 2
    resp = await client.post(f"{base(tenant)}/documents/d1", content=section(deepest), headers=headers)
    assert resp.status_code == 200, resp.text
    assert await dust_documents(client, tenant) == ["d1"]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 20_000])
async def test_dify_deep_json(client: httpx.AsyncClient, core: Core, depth: int) -> None:
    key, ds = await dify_dataset(client, core)
    for path in (f"/v1/datasets/{ds}/document/create-by-text", f"/v1/datasets/{ds}/retrieve", "/v1/datasets"):
        resp = await client.post(path, content=nested(depth), headers={**auth(key), "Content-Type": "application/json"})
        body = assert_dify_error(resp, 400, "invalid_param")
        assert f"{MAX_JSON_DEPTH}" in body["message"]
    resp = await client.post(
        f"/v1/datasets/{ds}/document/create-by-file",
        files={"file": ("a.txt", b"Some text.")},
        data={"data": nested(depth)},
        headers=auth(key),
    )
    assert_dify_error(resp, 400, "invalid_param")
    assert await dify_documents(client, key, ds) == ["first"]


async def test_json_within_the_depth_bound_is_accepted(client: httpx.AsyncClient, tenant: Tenant) -> None:
    resp = await client.post(
        f"{base(tenant)}/documents/d1",
        content='{"text": "hi", "ignored": ' + nested(MAX_JSON_DEPTH - 2) + "}",
        headers={**auth(tenant.key), "Content-Type": "application/json"},
    )
    assert resp.status_code == 200, resp.text


# --- text no store can hold: lone surrogates, NUL -----------------------------------------------------------------
UNSTORABLE = ["\\ud800", "\\udfff", "\\ude00\\ud83d", "\\uD83D", "\\u0000"]


@pytest.mark.parametrize("escape", UNSTORABLE)
async def test_dust_unstorable_text(client: httpx.AsyncClient, tenant: Tenant, escape: str) -> None:
    for field in ("text", "title", "source_url"):
        body = '{"text": "ok", "' + field + '": "a' + escape + 'b"}'
        resp = await client.post(
            f"{base(tenant)}/documents/d1",
            content=body,
            headers={**auth(tenant.key), "Content-Type": "application/json"},
        )
        err = assert_error(resp, 400, "invalid_request_error")
        assert ("NUL" if escape == "\\u0000" else "surrogate") in err["message"]
    resp = await client.post(
        f"{base(tenant)}/documents/d1",
        content='{"text": "ok", "tags": ["a' + escape + '"]}',
        headers={**auth(tenant.key), "Content-Type": "application/json"},
    )
    assert_error(resp, 400, "invalid_request_error")
    assert await dust_documents(client, tenant) == []


async def test_a_surrogate_pair_is_text(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = '{"text": "smile \\ud83d\\ude00", "title": "\\ud83d\\ude00"}'
    resp = await client.post(
        f"{base(tenant)}/documents/d1", content=body, headers={**auth(tenant.key), "Content-Type": "application/json"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["document"]["title"] == "\U0001f600"


@pytest.mark.parametrize("escape", UNSTORABLE)
async def test_dify_unstorable_text(client: httpx.AsyncClient, core: Core, escape: str) -> None:
    key, ds = await dify_dataset(client, core)
    headers = {**auth(key), "Content-Type": "application/json"}
    body = '{"name": "a' + escape + 'b", "text": "x", "indexing_technique": "high_quality"}'
    for path in (f"/v1/datasets/{ds}/document/create-by-text", f"/v1/datasets/{ds}/retrieve", "/v1/datasets"):
        resp = await client.post(path, content=body, headers=headers)
        assert_dify_error(resp, 400, "invalid_param")
    resp = await client.post(f"/v1/datasets/{ds}/retrieve", content='{"query": "a' + escape + '"}', headers=headers)
    assert_dify_error(resp, 400, "invalid_param")
    resp = await client.post(
        f"/v1/datasets/{ds}/document/create-by-file",
        files={"file": ("a.txt", b"Some text.")},
        data={"data": '{"indexing_technique": "high_quality", "name": "' + escape + '"}'},
        headers=auth(key),
    )
    assert_dify_error(resp, 400, "invalid_param")
    assert await dify_documents(client, key, ds) == ["first"]
    resp = await client.get("/v1/datasets", headers=auth(key))
    assert [d["name"] for d in resp.json()["data"]] == ["kb"]


def multipart(*parts: tuple[str, bytes, str | None]) -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += b"--B\r\nContent-Disposition: " + disposition.encode("utf-8", "surrogatepass") + b"\r\n\r\n"
        out += value + b"\r\n"
    return out + b"--B--\r\n"


async def test_unstorable_text_outside_json(client: httpx.AsyncClient, core: Core, tenant: Tenant) -> None:
    form = {**auth(tenant.key), "Content-Type": "multipart/form-data; boundary=B"}
    csv = ("file", b"a,b\n1,2\n", "t.csv")
    for parts, type_ in (
        ((("name", b"t\x00n", None), ("description", b"d", None), csv), "invalid_request_error"),
        ((("name", b"tn", None), ("description", b"d", None), ("file", b"a,b\n1,\x002\n", "t.csv")),
         "invalid_rows_request_error"),
    ):  # fmt: skip
        resp = await client.post(f"{base(tenant)}/tables/csv", content=multipart(*parts), headers=form)
        err = assert_error(resp, 400, type_)
        assert "NUL" in err["message"]
    assert (await client.get(f"{base(tenant)}/tables", headers=auth(tenant.key))).json()["tables"] == []
    resp = await client.get(f"{base(tenant)}/documents/a%00b", headers=auth(tenant.key))
    assert_error(resp, 400, "invalid_request_error")
    resp = await client.get(f"{base(tenant)}/search", params={"query": "a\x00b"}, headers=auth(tenant.key))
    assert_error(resp, 400, "invalid_request_error")

    key, ds = await dify_dataset(client, core)
    upload = multipart(("data", b'{"indexing_technique": "high_quality"}', None), ("file", b"abc", "a\x00.txt"))
    resp = await client.post(
        f"/v1/datasets/{ds}/document/create-by-file",
        content=upload,
        headers={**auth(key), "Content-Type": "multipart/form-data; boundary=B"},
    )
    assert_dify_error(resp, 400, "invalid_param")
    resp = await client.get(f"/v1/datasets/{ds}/documents", params={"keyword": "a\x00"}, headers=auth(key))
    assert_dify_error(resp, 400, "invalid_param")
    resp = await client.get(f"/v1/datasets/{ds}%00/documents", headers=auth(key))
    assert_dify_error(resp, 400, "invalid_param")
    assert await dify_documents(client, key, ds) == ["first"]


# --- a body over the limit, sent chunked ---------------------------------------------------------------------------
async def chunks(total: int) -> AsyncIterator[bytes]:
    sent = 0
    yield b'{"text": "'
    while sent < total:
        yield b"a" * 4096
        sent += 4096
    yield b'"}'


async def test_chunked_body_over_the_limit(client: httpx.AsyncClient, core: Core, tenant: Tenant) -> None:
    limit = int(core.settings.max_body_mb * 1024 * 1024)
    resp = await client.post(
        f"{base(tenant)}/documents/d1",
        content=chunks(limit + 10),
        headers={**auth(tenant.key), "Content-Type": "application/json"},
    )
    assert "content-length" not in resp.request.headers
    assert_error(resp, 413, "content_too_large")
    assert await dust_documents(client, tenant) == []

    key, ds = await dify_dataset(client, core)
    resp = await client.post(
        f"/v1/datasets/{ds}/document/create-by-text",
        content=chunks(limit + 10),
        headers={**auth(key), "Content-Type": "application/json"},
    )
    assert_dify_error(resp, 413, "request_entity_too_large")
    upload = b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'

    async def form() -> AsyncIterator[bytes]:
        yield upload
        async for piece in chunks(limit + 10):
            yield piece
        yield b"\r\n--B--\r\n"

    resp = await client.post(
        f"/v1/datasets/{ds}/document/create-by-file",
        content=form(),
        headers={**auth(key), "Content-Type": "multipart/form-data; boundary=B"},
    )
    assert_dify_error(resp, 413, "request_entity_too_large")
    assert await dify_documents(client, key, ds) == ["first"]
