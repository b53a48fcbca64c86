"""Dust search over HTTP: grouping, filters, scores, full_text, target_document_tokens, errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.test_dust_documents import CORE_DOCUMENT_KEYS, assert_error, auth, base, upsert
from tests.conftest import Tenant

pytestmark = [pytest.mark.anyio, pytest.mark.backends("sqlite", "postgres")]

T0 = 1_700_000_000_000
DOCS = {
    "cats": ("cats purr and sleep on warm windows", ["pets", "felines"], T0 + 1000),
    "dogs": ("dogs bark and fetch sticks in the park", ["pets"], T0 + 2000),
    "stocks": ("stock markets fell as interest rates rose", ["finance"], T0 + 3000),
    "bonds": ("bond yields rose with interest rates", ["finance"], T0 + 4000),
}


@pytest.fixture
async def loaded(client: httpx.AsyncClient, tenant: Tenant) -> Tenant:
    for doc_id, (text, tags, ts) in DOCS.items():
        resp = await upsert(client, tenant, doc_id, text=text, tags=tags, timestamp=ts)
        assert resp.status_code == 200, resp.text
    return tenant


async def search(client: httpx.AsyncClient, t: Tenant, params: Any) -> httpx.Response:
    return await client.get(f"{base(t)}/search", params=params, headers=auth(t.key))


@pytest.mark.parametrize("mode", ["keyword", "vector", "hybrid"])
async def test_each_mode_finds_the_right_document(client: httpx.AsyncClient, loaded: Tenant, mode: str) -> None:
    resp = await search(client, loaded, {"query": "interest rates rose", "top_k": 3, "search_mode": mode})
    assert resp.status_code == 200, resp.text
    docs = resp.json()["documents"]
    assert docs and set(docs[0]) == CORE_DOCUMENT_KEYS
    assert docs[0]["document_id"] in {"stocks", "bonds"}
    scores = [d["chunks"][0]["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    assert sum(len(d["chunks"]) for d in docs) <= 3
    assert all("text" not in d for d in docs)


async def test_filters(client: httpx.AsyncClient, loaded: Tenant) -> None:
    def ids(resp: httpx.Response) -> set[str]:
        assert resp.status_code == 200, resp.text
        return {d["document_id"] for d in resp.json()["documents"]}

    q = {"query": "rates park windows sticks", "top_k": 10}
    assert ids(await search(client, loaded, {**q, "tags_in": "finance"})) <= {"stocks", "bonds"}
    assert ids(await search(client, loaded, [*q.items(), ("tags_in", "felines"), ("tags_in", "finance")])) <= {
        "cats", "stocks", "bonds"
    }  # fmt: skip
    assert "cats" not in ids(await search(client, loaded, {**q, "tags_not": "felines"}))
    assert ids(await search(client, loaded, {**q, "parents_in": "dogs"})) == {"dogs"}
    assert "dogs" not in ids(await search(client, loaded, {**q, "parents_not": "dogs"}))
    # inclusive bounds
    assert ids(await search(client, loaded, {**q, "timestamp_gt": T0 + 2000, "timestamp_lt": T0 + 3000})) <= {
        "dogs",
        "stocks",
    }
    got = ids(
        await search(client, loaded, {"query": "", "top_k": 10, "timestamp_gt": T0 + 2000, "timestamp_lt": T0 + 3000})
    )
    assert got == {"dogs", "stocks"}


async def test_empty_query_lists_latest(client: httpx.AsyncClient, loaded: Tenant) -> None:
    resp = await search(client, loaded, {"query": "", "top_k": 2})
    docs = resp.json()["documents"]
    assert [d["document_id"] for d in docs] == ["bonds", "stocks"]
    assert all(c["score"] is None for d in docs for c in d["chunks"])


async def test_full_text(client: httpx.AsyncClient, loaded: Tenant) -> None:
    resp = await search(client, loaded, {"query": "cats purr", "top_k": 1, "full_text": "true"})
    doc = resp.json()["documents"][0]
    assert doc["text"] == DOCS["cats"][0]


async def test_target_document_tokens_adds_neighbours(client: httpx.AsyncClient, tenant: Tenant) -> None:
    words = [f"filler{i}" for i in range(200)]
    words[100] = "needle"
    await upsert(client, tenant, "long", text=" ".join(words))
    plain = await search(client, tenant, {"query": "needle", "top_k": 1, "search_mode": "keyword"})
    hit = plain.json()["documents"][0]["chunks"][0]
    assert hit["expanded_offsets"] == []
    grown = await search(
        client, tenant, {"query": "needle", "top_k": 1, "search_mode": "keyword", "target_document_tokens": 32 * 3}
    )
    chunk = grown.json()["documents"][0]["chunks"][0]
    assert sorted(chunk["expanded_offsets"]) == [hit["offset"] - 1, hit["offset"] + 1]
    assert hit["text"] in chunk["text"] and len(chunk["text"]) > len(hit["text"])
    assert grown.json()["documents"][0]["token_count"] == 3 * 32


async def test_search_errors(client: httpx.AsyncClient, loaded: Tenant) -> None:
    assert_error(await search(client, loaded, {"top_k": 3}), 400, "invalid_request_error")
    assert_error(await search(client, loaded, {"query": "x"}), 400, "invalid_request_error")
    assert_error(await search(client, loaded, {"query": "x", "top_k": "many"}), 400, "invalid_request_error")
    err = assert_error(await search(client, loaded, {"query": "x", "top_k": 5000}), 400, "data_source_error")
    assert "data_source_error" in err
    assert_error(await search(client, loaded, {"query": "x", "top_k": 3, "search_mode": "magic"}), 400,
                 "invalid_request_error")  # fmt: skip


async def test_delete_removes_from_both_indexes(client: httpx.AsyncClient, loaded: Tenant) -> None:
    await client.delete(f"{base(loaded)}/documents/cats", headers=auth(loaded.key))
    for mode in ("keyword", "vector"):
        resp = await search(client, loaded, {"query": "cats purr windows", "top_k": 10, "search_mode": mode})
        assert "cats" not in {d["document_id"] for d in resp.json()["documents"]}
