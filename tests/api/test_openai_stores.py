"""The OpenAI door in process: exact object shapes, statuses and error bodies, cursor pagination, attribute filters
inside the ranking, batches (cancel included), failed files, and the key's scope. Indexing runs through the durable
queue, drained in the test's thread; the fake embedder stands in for MiniLM (vector quality does not matter here)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from alexandria.config import Settings
from alexandria.domain.models import Role
from alexandria.services.core import Core
from tests.api.dify_helpers import dify  # noqa: F401  (a pytest fixture)
from tests.api.openai_helpers import assert_error, attach, auth, create_store, upload
from tests.api.test_access_matrix import StoreWatch

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dify"), pytest.mark.backends("sqlite", "postgres")]

FILE_KEYS = {"id", "object", "bytes", "created_at", "filename", "purpose", "status", "status_details", "expires_at"}
STORE_KEYS = {"id", "object", "created_at", "name", "description", "usage_bytes", "file_counts", "status",
              "expires_after", "expires_at", "last_active_at", "metadata"}  # fmt: skip
VS_FILE_KEYS = {"id", "object", "usage_bytes", "created_at", "vector_store_id", "status", "last_error",
                "chunking_strategy", "attributes"}  # fmt: skip
COUNT_KEYS = {"in_progress", "completed", "failed", "cancelled", "total"}


@pytest.fixture
def key(core: Core) -> str:
    ws, _ = core.catalog.ensure_workspace("w1")
    return core.keys.create(ws, Role.ADMIN)[1]


async def test_objects_have_openais_shapes(client: httpx.AsyncClient, core: Core, key: str) -> None:
    resp = await client.post("/v1/files", files={"file": ("a.txt", b"hello world")}, data={"purpose": "assistants"},
                             headers=auth(key))  # fmt: skip
    f = resp.json()
    assert set(f) == FILE_KEYS and f["object"] == "file" and f["bytes"] == 11 and f["filename"] == "a.txt"
    assert f["id"].startswith("file-") and f["purpose"] == "assistants" and f["status"] == "processed"
    store = await create_store(client, key, "Docs", metadata={"team": "blue"})
    assert set(store) == STORE_KEYS and store["object"] == "vector_store" and store["id"].startswith("vs_")
    assert store["name"] == "Docs" and store["metadata"] == {"team": "blue"} and store["status"] == "completed"
    assert store["file_counts"] == dict.fromkeys(COUNT_KEYS, 0)
    resp = await client.post(f"/v1/vector_stores/{store['id']}/files", json={"file_id": f["id"]}, headers=auth(key))
    queued = resp.json()
    assert set(queued) == VS_FILE_KEYS and queued["status"] == "in_progress" and queued["id"] == f["id"]
    assert queued["chunking_strategy"] == {
        "type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}  # fmt: skip
    polled = await client.get(f"/v1/vector_stores/{store['id']}/files/{f['id']}", headers=auth(key))
    assert polled.headers["openai-poll-after-ms"] == "250"
    retrieved = (await client.get(f"/v1/vector_stores/{store['id']}", headers=auth(key))).json()
    assert retrieved["status"] == "in_progress" and retrieved["file_counts"]["in_progress"] == 1
    core.jobs.pool(0).drain()
    done = (await client.get(f"/v1/vector_stores/{store['id']}/files/{f['id']}", headers=auth(key))).json()
    assert done["status"] == "completed" and done["last_error"] is None and done["usage_bytes"] == 11
    retrieved = (await client.get(f"/v1/vector_stores/{store['id']}", headers=auth(key))).json()
    assert retrieved["file_counts"] == {"in_progress": 0, "completed": 1, "failed": 0, "cancelled": 0, "total": 1}
    assert retrieved["status"] == "completed" and retrieved["usage_bytes"] == 11
    content = (await client.get(f"/v1/vector_stores/{store['id']}/files/{f['id']}/content", headers=auth(key))).json()
    assert content == {"object": "vector_store.file_content.page", "data": [{"type": "text", "text": "hello world"}],
                       "has_more": False, "next_page": None}  # fmt: skip
    page = (await client.post(f"/v1/vector_stores/{store['id']}/search", json={"query": "hello"},
                              headers=auth(key))).json()  # fmt: skip
    assert set(page) == {"object", "search_query", "data", "has_more", "next_page"}
    assert page["object"] == "vector_store.search_results.page" and page["search_query"] == ["hello"]
    hit = page["data"][0]
    assert set(hit) == {"file_id", "filename", "score", "attributes", "content"} and 0 <= hit["score"] <= 1
    assert hit["file_id"] == f["id"] and hit["content"] == [{"type": "text", "text": "hello world"}]
    raw = await client.get(f"/v1/files/{f['id']}/content", headers=auth(key))
    assert raw.content == b"hello world"
    deleted = await client.delete(f"/v1/vector_stores/{store['id']}/files/{f['id']}", headers=auth(key))
    assert deleted.json() == {"id": f["id"], "object": "vector_store.file.deleted", "deleted": True}
    gone = await client.delete(f"/v1/vector_stores/{store['id']}", headers=auth(key))
    assert gone.json() == {"id": store["id"], "object": "vector_store.deleted", "deleted": True}
    assert (await client.get(f"/v1/files/{f['id']}", headers=auth(key))).status_code == 200  # files outlive stores


async def test_cursor_pagination_walks_every_store_once(client: httpx.AsyncClient, key: str) -> None:
    made = [(await create_store(client, key, f"s{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "2", "order": "asc", **({"after": after} if after else {})}
        page = (await client.get("/v1/vector_stores", params=params, headers=auth(key))).json()
        assert set(page) == {"object", "data", "first_id", "last_id", "has_more"} and page["object"] == "list"
        seen += [s["id"] for s in page["data"]]
        assert page["first_id"] == page["data"][0]["id"] and page["last_id"] == page["data"][-1]["id"]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == made
    newest = (await client.get("/v1/vector_stores", params={"limit": "2"}, headers=auth(key))).json()
    assert [s["id"] for s in newest["data"]] == made[:-3:-1]  # desc by default
    before = (await client.get("/v1/vector_stores", params={"order": "asc", "before": made[3]},
                               headers=auth(key))).json()  # fmt: skip
    assert [s["id"] for s in before["data"]] == made[:3]


ATTRIBUTES = {
    "a": {"year": 2021, "kind": "memo", "public": True, "score": 0.5},
    "b": {"year": 2023, "kind": "report", "public": False, "score": 2},
    "c": {"year": 2024, "kind": "report", "public": True},
    "d": {"kind": "note"},
}
FILTERS: list[tuple[dict[str, Any], set[str]]] = [
    ({"type": "eq", "key": "kind", "value": "report"}, {"b", "c"}),
    ({"type": "ne", "key": "kind", "value": "report"}, {"a", "d"}),
    ({"type": "eq", "key": "public", "value": True}, {"a", "c"}),
    ({"type": "eq", "key": "year", "value": 2023}, {"b"}),
    ({"type": "gt", "key": "year", "value": 2021}, {"b", "c"}),
    ({"type": "gte", "key": "year", "value": 2021}, {"a", "b", "c"}),
    ({"type": "lt", "key": "score", "value": 1}, {"a"}),
    ({"type": "lte", "key": "year", "value": 2023}, {"a", "b"}),
    ({"type": "in", "key": "kind", "value": ["memo", "note"]}, {"a", "d"}),
    ({"type": "nin", "key": "kind", "value": ["memo", "note"]}, {"b", "c"}),
    ({"type": "in", "key": "year", "value": [2021, 2024]}, {"a", "c"}),
    ({"type": "and", "filters": [{"type": "eq", "key": "kind", "value": "report"},
                                 {"type": "eq", "key": "public", "value": True}]}, {"c"}),
    ({"type": "or", "filters": [{"type": "eq", "key": "kind", "value": "note"},
                                {"type": "and", "filters": [{"type": "gte", "key": "year", "value": 2023},
                                                            {"type": "eq", "key": "public", "value": False}]}]},
     {"b", "d"}),
]  # fmt: skip


async def test_attribute_filters_select_the_files_before_ranking(
    client: httpx.AsyncClient, core: Core, key: str
) -> None:
    store = (await create_store(client, key))["id"]
    ids: dict[str, str] = {}
    for name, attributes in ATTRIBUTES.items():
        ids[name] = await upload(client, key, f"{name}.txt", f"lighthouse record {name}".encode())
        await attach(client, core, key, store, ids[name], attributes=attributes)
    # files that rank above the filtered ones for the query, so a filter applied after ranking would starve
    for i in range(12):
        noise = await upload(client, key, f"noise{i}.txt", b"lighthouse lighthouse lighthouse lighthouse")
        await attach(client, core, key, store, noise, attributes={"noise": True})
    names = {v: k for k, v in ids.items()}
    for flt, want in FILTERS:
        body = {"query": "lighthouse", "filters": flt, "max_num_results": len(want)}
        resp = await client.post(f"/v1/vector_stores/{store}/search", json=body, headers=auth(key))
        assert resp.status_code == 200, resp.text
        got = {names.get(h["file_id"], h["file_id"]) for h in resp.json()["data"]}
        assert got == want, (flt, got)


BAD_SEARCHES: list[tuple[dict[str, Any], str]] = [
    ({}, "query"),
    ({"query": 5}, "query"),
    ({"query": []}, "query"),
    ({"query": "x", "max_num_results": 0}, "max_num_results"),
    ({"query": "x", "max_num_results": 51}, "max_num_results"),
    ({"query": "x", "max_num_results": "3"}, "max_num_results"),
    ({"query": "x", "rewrite_query": "yes"}, "rewrite_query"),
    ({"query": "x", "ranking_options": {"score_threshold": 1.5}}, "ranking_options"),
    ({"query": "x", "ranking_options": {"ranker": "best"}}, "ranking_options"),
    ({"query": "x", "filters": {"type": "regex", "key": "a", "value": "b"}}, "filters"),
    ({"query": "x", "filters": {"type": "gt", "key": "a", "value": "b"}}, "filters"),
    ({"query": "x", "filters": {"type": "in", "key": "a", "value": "b"}}, "filters"),
    ({"query": "x", "filters": {"type": "in", "key": "a", "value": [True]}}, "filters"),
    ({"query": "x", "filters": {"type": "eq", "key": "a"}}, "filters"),
    ({"query": "x", "filters": {"type": "and", "filters": []}}, "filters"),
    ({"query": "x", "filters": {"type": "eq", "key": 'a"b', "value": 1}}, "filters"),
    ({"query": "x", "filters": [1]}, "filters"),
]


async def test_bad_requests_get_400_with_the_param_and_change_nothing(
    client: httpx.AsyncClient, core: Core, key: str, settings: Settings, backend: str
) -> None:
    store = (await create_store(client, key))["id"]
    file_id = await upload(client, key, "a.txt", b"alpha")
    await attach(client, core, key, store, file_id)
    watch = StoreWatch(settings) if backend == "sqlite" else None  # the whole database, dumped
    vs = f"/v1/vector_stores/{store}"
    before = (await client.get(f"{vs}/files/{file_id}", headers=auth(key))).json()
    for body, param in BAD_SEARCHES:
        assert_error(await client.post(f"{vs}/search", json=body, headers=auth(key)), 400, param)
    writes: list[tuple[str, str, Any, str | None]] = [
        ("POST", "/v1/vector_stores", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ("POST", "/v1/vector_stores", {"metadata": {"k": 1}}, "metadata"),
        ("POST", "/v1/vector_stores", {"expires_after": {"anchor": "last_active_at", "days": 0}}, "expires_after"),
        ("POST", "/v1/vector_stores", {"file_ids": ["file-nope"]}, None),
        ("POST", "/v1/vector_stores", {"name": 3}, "name"),
        ("POST", vs, {"metadata": "x"}, "metadata"),
        ("POST", f"{vs}/files", {}, "file_id"),
        ("POST", f"{vs}/files", {"file_id": file_id, "attributes": {f"k{i}": 1 for i in range(17)}}, "attributes"),
        ("POST", f"{vs}/files", {"file_id": file_id, "attributes": {"k": [1]}}, "attributes"),
        ("POST", f"{vs}/files", {"file_id": file_id, "attributes": {"k": "x" * 513}}, "attributes"),
        ("POST", f"{vs}/files", {"file_id": file_id, "attributes": {"k" * 65: 1}}, "attributes"),
        ("POST", f"{vs}/files", {"file_id": file_id, "chunking_strategy": {"type": "static", "static": {
            "max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0}}}, "chunking_strategy"),
        ("POST", f"{vs}/files", {"file_id": file_id, "chunking_strategy": {"type": "static", "static": {
            "max_chunk_size_tokens": 4097, "chunk_overlap_tokens": 0}}}, "chunking_strategy"),
        ("POST", f"{vs}/files", {"file_id": file_id, "chunking_strategy": {"type": "static", "static": {
            "max_chunk_size_tokens": 400, "chunk_overlap_tokens": 201}}}, "chunking_strategy"),
        ("POST", f"{vs}/files", {"file_id": file_id, "chunking_strategy": {"type": "fancy"}}, "chunking_strategy"),
        ("POST", f"{vs}/files/{file_id}", {"attributes": "x"}, "attributes"),
        ("POST", f"{vs}/files/{file_id}", {}, "attributes"),
        ("POST", f"{vs}/file_batches", {}, "file_ids"),
        ("POST", f"{vs}/file_batches", {"file_ids": []}, "file_ids"),
        ("POST", f"{vs}/file_batches", {"file_ids": [file_id], "files": [{"file_id": file_id}]}, "file_ids"),
        ("POST", f"{vs}/file_batches", {"files": [{"id": file_id}]}, "files"),
    ]  # fmt: skip
    for method, path, body, param in writes:
        resp = await client.request(method, path, json=body, headers=auth(key))
        status = 404 if body == {"file_ids": ["file-nope"]} else 400
        assert_error(resp, status, param)
    assert_error(await client.post(f"{vs}/search", content=b"{nope", headers=auth(key)), 400, code="invalid_json")
    for params, param in (({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"order": "up"}, "order"),
                          ({"after": "vs_nope"}, "after")):  # fmt: skip
        assert_error(await client.get("/v1/vector_stores", params=params, headers=auth(key)), 400, param)
    assert_error(await client.get(f"{vs}/files", params={"filter": "done"}, headers=auth(key)), 400, "filter")
    resp = await client.post("/v1/files", files={"file": ("a.txt", b"x")}, data={"purpose": "nope"}, headers=auth(key))
    assert_error(resp, 400, "purpose")
    assert_error(await client.post("/v1/files", json={"purpose": "assistants"}, headers=auth(key)), 400, "file")
    if watch is not None:
        assert not watch.changed(), "a refused request changed stored data"
        watch.close()
    assert (await client.get(f"{vs}/files/{file_id}", headers=auth(key))).json() == before
    stores = (await client.get("/v1/vector_stores", headers=auth(key))).json()["data"]
    assert [s["id"] for s in stores] == [store]
    files = (await client.get("/v1/files", headers=auth(key))).json()["data"]
    assert [f["id"] for f in files] == [file_id]


async def test_unknown_ids_routes_and_keys(client: httpx.AsyncClient, core: Core, key: str) -> None:
    store = (await create_store(client, key))["id"]
    vs = f"/v1/vector_stores/{store}"
    for path in ("/v1/vector_stores/vs_nope", "/v1/vector_stores/nope", f"{vs}/files/file-nope",
                 f"{vs}/file_batches/vsfb_nope", f"{vs}/file_batches/nope/files", "/v1/files/file-nope",
                 "/v1/files/file-nope/content", f"{vs}/nowhere"):  # fmt: skip
        assert_error(await client.get(path, headers=auth(key)), 404)
    resp = await client.put(vs, headers=auth(key))
    assert_error(resp, 405)
    assert "GET" in resp.headers["allow"]
    assert_error(await client.get("/v1/vector_stores"), 401, code="invalid_api_key")
    assert_error(await client.get("/v1/files", headers=auth("sk-wrong")), 401, code="invalid_api_key")
    ws, _ = core.catalog.ensure_workspace("w1")
    user = core.keys.create(ws, Role.USER)[1]
    assert_error(await client.get("/v1/vector_stores", headers=auth(user)), 403)
    # Dify's paths keep Dify's envelope
    resp = await client.get("/v1/datasets/not-a-uuid", headers=auth(key))
    assert resp.status_code == 404 and set(resp.json()) == {"code", "message", "status"}


async def test_batches_cancel_and_failed_files(client: httpx.AsyncClient, core: Core, key: str) -> None:
    store = (await create_store(client, key))["id"]
    vs = f"/v1/vector_stores/{store}"
    ids = [await upload(client, key, f"{n}.md", f"# {n}\nbody of {n}".encode()) for n in ("one", "two")]
    created = (await client.post(f"{vs}/file_batches", json={"file_ids": ids, "attributes": {"k": "v"}},
                                 headers=auth(key))).json()  # fmt: skip
    assert set(created) == {"id", "object", "created_at", "vector_store_id", "status", "file_counts"}
    assert created["object"] == "vector_store.files_batch" and created["status"] == "in_progress"
    assert created["file_counts"]["in_progress"] == 2 and created["vector_store_id"] == store
    cancelled = (await client.post(f"{vs}/file_batches/{created['id']}/cancel", headers=auth(key))).json()
    assert cancelled["status"] == "cancelled" and cancelled["file_counts"]["cancelled"] == 2
    core.jobs.pool(0).drain()
    listed = (await client.get(f"{vs}/file_batches/{created['id']}/files", params={"filter": "cancelled"},
                               headers=auth(key))).json()  # fmt: skip
    assert sorted(f["id"] for f in listed["data"]) == sorted(ids)
    found = (await client.post(f"{vs}/search", json={"query": "body"}, headers=auth(key))).json()
    assert found["data"] == []  # cancelled files are out of the indexes
    batch = (await client.post(f"{vs}/file_batches", json={"files": [
        {"file_id": ids[0], "attributes": {"n": 1}}, {"file_id": ids[1], "attributes": {"n": 2}}]},
        headers=auth(key))).json()  # fmt: skip
    core.jobs.pool(0).drain()
    done = (await client.get(f"{vs}/file_batches/{batch['id']}", headers=auth(key))).json()
    assert done["status"] == "completed" and done["file_counts"]["completed"] == 2
    one = (await client.get(f"{vs}/files/{ids[1]}", headers=auth(key))).json()
    assert one["attributes"] == {"n": 2} and one["status"] == "completed"
    bad = [await upload(client, key, "x.xyz", b"what"), await upload(client, key, "broken.pdf", b"%PDF-1.4 junk")]
    for file_id, code in zip(bad, ("unsupported_file", "invalid_file"), strict=True):
        failed = await attach(client, core, key, store, file_id)
        assert failed["status"] == "failed" and failed["last_error"]["code"] == code, failed
        assert failed["last_error"]["message"]
    failed_list = (await client.get(f"{vs}/files", params={"filter": "failed"}, headers=auth(key))).json()
    assert sorted(f["id"] for f in failed_list["data"]) == sorted(bad)
    updated = await client.post(f"{vs}/files/{ids[0]}", json={"attributes": {"year": 2020}}, headers=auth(key))
    assert updated.json()["attributes"] == {"year": 2020}
    await client.delete(f"/v1/files/{ids[0]}", headers=auth(key))  # leaves every store too
    assert_error(await client.get(f"{vs}/files/{ids[0]}", headers=auth(key)), 404)


async def test_a_bound_key_is_confined_to_its_store(client: httpx.AsyncClient, core: Core, key: str) -> None:
    mine, other = (await create_store(client, key, "mine"))["id"], (await create_store(client, key, "other"))["id"]
    ws, _ = core.catalog.ensure_workspace("w1")
    ds = core.catalog.find_dataset(ws, mine[len("vs_") :])
    assert ds is not None
    bound = core.keys.create(ws, Role.BUILDER, data_source_id=ds.id)[1]
    shared = await upload(client, key, "shared.txt", b"shared text")
    await attach(client, core, key, other, shared)
    listed = (await client.get("/v1/vector_stores", headers=auth(bound))).json()["data"]
    assert [s["id"] for s in listed] == [mine]
    assert_error(await client.get(f"/v1/vector_stores/{other}", headers=auth(bound)), 404)
    assert_error(await client.post(f"/v1/vector_stores/{other}/search", json={"query": "shared"},
                                   headers=auth(bound)), 404)  # fmt: skip
    assert_error(await client.post("/v1/vector_stores", json={"name": "x"}, headers=auth(bound)), 403)
    assert_error(await client.get(f"/v1/files/{shared}", headers=auth(bound)), 404)
    assert (await client.get("/v1/files", headers=auth(bound))).json()["data"] == []
    assert_error(await client.post(f"/v1/vector_stores/{mine}/files", json={"file_id": shared},
                                   headers=auth(bound)), 404)  # fmt: skip
    own = await upload(client, bound, "own.txt", b"own text")
    done = await attach(client, core, bound, mine, own)
    assert done["status"] == "completed"
    assert [f["id"] for f in (await client.get("/v1/files", headers=auth(bound))).json()["data"]] == [own]
    assert (await client.get(f"/v1/files/{own}", headers=auth(key))).status_code == 200  # unbound keys see it


async def test_a_store_in_a_restricted_space_hides_its_files(client: httpx.AsyncClient, core: Core, key: str) -> None:
    ws, _ = core.catalog.ensure_workspace("w1")
    core.spaces.create_group(ws, "g1")
    space = core.spaces.create_space(ws, "R", restricted=True, groups=["g1"])
    ds = core.catalog.create_data_source(ws, "secret", space=space, embedder="fake")
    _, system = core.keys.create(ws, Role.SYSTEM)
    outsider = core.keys.create(ws, Role.BUILDER)[1]
    file_id = await upload(client, system, "secret.txt", b"secret text")
    await attach(client, core, system, f"vs_{ds.uuid}", file_id)
    assert_error(await client.get(f"/v1/vector_stores/vs_{ds.uuid}", headers=auth(outsider)), 404)
    assert_error(await client.get(f"/v1/files/{file_id}/content", headers=auth(outsider)), 404)
    assert (await client.get("/v1/files", headers=auth(outsider))).json()["data"] == []
    assert (await client.get(f"/v1/files/{file_id}", headers=auth(system))).status_code == 200


async def test_chunking_strategies_size_the_chunks_in_tokens(client: httpx.AsyncClient, core: Core, key: str) -> None:
    store = (await create_store(client, key))["id"]
    text = " ".join(f"word{i} common" for i in range(150))  # 300 tokens for the whitespace tokenizer
    static = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 50}}
    small = await attach(client, core, key, store, await upload(client, key, "s.txt", text.encode()),
                         chunking_strategy=static, attributes={"kind": "static"})  # fmt: skip
    assert small["chunking_strategy"] == static
    await attach(client, core, key, store, await upload(client, key, "a.txt", text.encode()),
                 attributes={"kind": "auto"})  # fmt: skip

    async def chunks(kind: str) -> list[str]:
        body = {"query": "common", "max_num_results": 50, "filters": {"type": "eq", "key": "kind", "value": kind}}
        page = (await client.post(f"/v1/vector_stores/{store}/search", json=body, headers=auth(key))).json()
        return [c["text"] for hit in page["data"] for c in hit["content"]]

    windows = await chunks("static")
    assert len(windows) == 5 and all(len(w.split()) <= 100 for w in windows)  # 0-100, 50-150, ..., 200-300
    assert {w.split()[0] for w in windows} == {"word0", "word25", "word50", "word75", "word100"}
    assert await chunks("auto") == [text]  # 300 tokens fit one 800-token window
