"""Dify retrieval (POST /v1/datasets/{id}/retrieve and /hit-testing, dify-behaviour.md §2.4, §4): the four search
methods with scores in [0, 1] of one meaning, score_threshold, top_k, hybrid weights, metadata_filtering_conditions,
reranking through a real HTTP reranker, the record shape, and one store under two dialects."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from alexandria.api.app import create_asgi
from alexandria.config import Settings
from alexandria.domain.models import Role
from alexandria.search.rerank import HTTPReranker
from alexandria.services.core import Core
from tests.fakes import HashingEmbedder
from tests.unit.test_rerank import FakeServer

pytestmark = [pytest.mark.anyio, pytest.mark.backends("sqlite", "postgres")]

DOCS = {
    "mito": "Mitochondria produce most of the ATP of a cell through oxidative phosphorylation.",
    "plants": "Plant cells have a rigid cell wall made of cellulose and chloroplasts for photosynthesis.",
    "heart": "The heart pumps blood through arteries and veins; the left ventricle is the strongest chamber.",
    "ocean": "Ocean currents move heat from the equator toward the poles and shape the climate of coasts.",
}
RECORD_KEYS = {"segment", "child_chunks", "score", "tsne_position", "files", "summary"}
SEGMENT_KEYS = {
    "id", "position", "document_id", "content", "sign_content", "answer", "word_count", "tokens", "keywords",
    "index_node_id", "index_node_hash", "hit_count", "enabled", "disabled_at", "disabled_by", "status", "created_by",
    "created_at", "updated_at", "updated_by", "indexing_at", "completed_at", "error", "stopped_at", "child_chunks",
    "attachments", "summary", "document",
}  # fmt: skip


class Kb:
    def __init__(self, client: httpx.AsyncClient, core: Core, key: str, dataset_id: str, ws_sid: str) -> None:
        self.client, self.core, self.key, self.id, self.ws_sid = client, core, key, dataset_id, ws_sid
        self.docs: dict[str, str] = {}

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def add(self, name: str, text: str) -> str:
        resp = await self.client.post(
            f"/v1/datasets/{self.id}/document/create-by-text",
            json={
                "name": name,
                "text": text,
                "indexing_technique": "high_quality",
                "process_rule": {"mode": "automatic"},
            },
            headers=self.headers,
        )
        assert resp.status_code == 200, resp.text
        self.docs[name] = resp.json()["document"]["id"]
        return str(resp.json()["document"]["id"])

    def index(self) -> None:
        self.core.jobs.pool(0).drain()

    async def retrieve(self, query: str, path: str = "retrieve", **model: Any) -> httpx.Response:
        retrieval = {"search_method": "semantic_search", "reranking_enable": False, "top_k": 10,
                     "score_threshold_enabled": False} | model  # fmt: skip
        return await self.client.post(
            f"/v1/datasets/{self.id}/{path}", json={"query": query, "retrieval_model": retrieval}, headers=self.headers
        )

    async def records(self, query: str, **model: Any) -> list[dict[str, Any]]:
        resp = await self.retrieve(query, **model)
        assert resp.status_code == 200, resp.text
        return list(resp.json()["records"])


@pytest.fixture
def fake() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture
def dify_core(settings: Settings, fake: HashingEmbedder) -> Iterator[Core]:
    c = Core(settings)
    c.embedders.register("minilm", fake)  # datasets use the default embedder name
    yield c
    c.close()


@pytest.fixture
async def kb(settings: Settings, dify_core: Core) -> AsyncIterator[Kb]:
    ws, _ = dify_core.catalog.ensure_workspace("w1")
    _, key = dify_core.keys.create(ws, Role.BUILDER)
    transport = httpx.ASGITransport(app=create_asgi(settings, dify_core))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        resp = await client.post(
            "/v1/datasets", json={"name": "kb", "indexing_technique": "high_quality"},
            headers={"Authorization": f"Bearer {key}"},
        )  # fmt: skip
        assert resp.status_code == 200, resp.text
        k = Kb(client, dify_core, key, resp.json()["id"], ws.sid)
        for name, text in DOCS.items():
            await k.add(name, text)
        k.index()
        yield k


def cosine(fake: HashingEmbedder, a: str, b: str) -> float:
    va, vb = fake.embed([a])[0], fake.embed([b])[0]
    return float(np.dot(va, vb))


@pytest.mark.parametrize("method", ["semantic_search", "full_text_search", "keyword_search", "hybrid_search"])
async def test_each_method_finds_the_matching_document_first_with_scores_in_unit_range(kb: Kb, method: str) -> None:
    records = await kb.records("mitochondria ATP oxidative", search_method=method)
    assert records, method
    assert records[0]["segment"]["document"]["name"] == "mito"
    scores = [r["score"] for r in records]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert set(records[0]) == RECORD_KEYS
    assert set(records[0]["segment"]) == SEGMENT_KEYS
    assert set(records[0]["segment"]["document"]) == {"id", "data_source_type", "name", "doc_type", "doc_metadata"}
    assert records[0]["segment"]["document"]["id"] == kb.docs["mito"]


async def test_semantic_score_is_the_cosine_and_keyword_score_the_share_of_the_bm25_bound(
    kb: Kb, fake: HashingEmbedder
) -> None:
    query = "heart pumps blood"
    semantic = await kb.records(query, search_method="semantic_search")
    best = semantic[0]
    assert best["segment"]["document"]["name"] == "heart"
    assert math.isclose(best["score"], cosine(fake, query, best["segment"]["content"]), abs_tol=1e-5)
    keyword = await kb.records(query, search_method="full_text_search")
    assert keyword[0]["segment"]["document"]["name"] == "heart"
    # one occurrence of each term in a chunk of about average length: about 1/(k1+1) of the bound
    assert 0.3 < keyword[0]["score"] < 0.6
    ds = kb.core.dify.dataset(kb.core.catalog.workspace(kb.ws_sid), kb.id)
    assert kb.core.store.keyword_score_bound(ds, query) > 0
    # a chunk saturated with the query terms scores close to the bound
    await kb.add("saturated", " ".join(["heart pumps blood"] * 60))
    kb.index()
    top = (await kb.records(query, search_method="full_text_search"))[0]
    assert top["segment"]["document"]["name"] == "saturated" and top["score"] > keyword[0]["score"]


async def test_hybrid_weights_reduce_to_each_signal(kb: Kb) -> None:
    query = "cell wall photosynthesis chloroplasts"
    semantic = {r["segment"]["id"]: r["score"] for r in await kb.records(query, search_method="semantic_search")}
    keyword = {r["segment"]["id"]: r["score"] for r in await kb.records(query, search_method="full_text_search")}

    def weights(v: float, k: float) -> dict[str, Any]:
        return {"weight_type": "customized", "vector_setting": {"vector_weight": v, "embedding_provider_name": "",
                "embedding_model_name": ""}, "keyword_setting": {"keyword_weight": k}}  # fmt: skip

    only_vector = await kb.records(query, search_method="hybrid_search", weights=weights(1.0, 0.0))
    for r in only_vector:
        assert math.isclose(r["score"], semantic.get(r["segment"]["id"], r["score"]), abs_tol=1e-6)
    only_keyword = await kb.records(query, search_method="hybrid_search", weights=weights(0.0, 1.0))
    assert only_keyword[0]["segment"]["document"]["name"] == "plants"
    assert math.isclose(only_keyword[0]["score"], keyword[only_keyword[0]["segment"]["id"]], abs_tol=1e-6)
    mixed = await kb.records(query, search_method="hybrid_search", weights=weights(0.7, 0.3))
    top = mixed[0]["segment"]["id"]
    assert math.isclose(mixed[0]["score"], 0.7 * semantic[top] + 0.3 * keyword[top], abs_tol=1e-6)
    bad = await kb.retrieve(query, search_method="hybrid_search", weights=weights(-1.0, 0.5))
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_param"


async def test_score_threshold_and_top_k(kb: Kb) -> None:
    query = "cell"
    everything = await kb.records(query, search_method="hybrid_search")
    assert len(everything) >= 2
    cut = (everything[0]["score"] + everything[1]["score"]) / 2
    kept = await kb.records(query, search_method="hybrid_search", score_threshold_enabled=True, score_threshold=cut)
    assert [r["segment"]["id"] for r in kept] == [everything[0]["segment"]["id"]]
    ignored = await kb.records(query, search_method="hybrid_search", score_threshold_enabled=False, score_threshold=1)
    assert len(ignored) == len(everything)
    assert len(await kb.records(query, search_method="hybrid_search", top_k=1)) == 1


async def test_request_validation(kb: Kb) -> None:
    resp = await kb.client.post(f"/v1/datasets/{kb.id}/retrieve", json={}, headers=kb.headers)
    assert resp.status_code == 400
    assert resp.json() == {"code": "invalid_param", "message": "Query or attachment_ids is required", "status": 400}
    resp = await kb.retrieve("x" * 251)
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_param"
    resp = await kb.client.post(
        f"/v1/datasets/{kb.id}/retrieve",
        json={"query": "cell", "retrieval_model": {"search_method": "semantic_search"}},
        headers=kb.headers,
    )
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_param"
    resp = await kb.retrieve("cell", search_method="telepathy")
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_param"
    resp = await kb.retrieve("cell", reranking_enable=True)  # no reranker configured
    assert resp.status_code == 400 and "Rerank" in resp.json()["message"]
    resp = await kb.client.post(f"/v1/datasets/{kb.id}/retrieve", content=b"{", headers=kb.headers)
    assert resp.status_code == 400 and resp.json()["code"] == "bad_request"


async def test_hit_testing_is_the_same_handler_and_counts_hits(kb: Kb) -> None:
    a = await kb.retrieve("ocean currents climate", path="hit-testing", search_method="full_text_search")
    b = await kb.retrieve("ocean currents climate", path="retrieve", search_method="full_text_search")
    assert a.status_code == b.status_code == 200
    assert a.json()["query"] == {"content": "ocean currents climate"}
    first, second = a.json()["records"][0], b.json()["records"][0]
    assert first["segment"]["id"] == second["segment"]["id"]
    assert second["segment"]["hit_count"] == first["segment"]["hit_count"] + 1
    assert first["score"] == second["score"]


async def test_default_model_is_the_datasets_retrieval_model(kb: Kb) -> None:
    resp = await kb.client.patch(
        f"/v1/datasets/{kb.id}",
        json={"retrieval_model": {"search_method": "full_text_search", "reranking_enable": False, "top_k": 1,
                                  "score_threshold_enabled": False}},
        headers=kb.headers,
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    resp = await kb.client.post(f"/v1/datasets/{kb.id}/retrieve", json={"query": "heart"}, headers=kb.headers)
    assert resp.status_code == 200
    records = resp.json()["records"]
    assert len(records) == 1 and records[0]["segment"]["document"]["name"] == "heart"


async def test_metadata_filtering_conditions(kb: Kb) -> None:
    fields = {}
    for name, type_ in (("author", "string"), ("year", "number")):
        resp = await kb.client.post(f"/v1/datasets/{kb.id}/metadata", json={"name": name, "type": type_},
                                    headers=kb.headers)  # fmt: skip
        assert resp.status_code == 201, resp.text
        fields[name] = resp.json()["id"]
    values = {"mito": ("Curie", 2001), "plants": ("Darwin", 1859), "heart": ("Harvey", 1628), "ocean": ("Curie", 1990)}
    ops = [
        {"document_id": kb.docs[doc], "metadata_list": [{"id": fields["author"], "name": "author", "value": author},
                                                        {"id": fields["year"], "name": "year", "value": year}]}
        for doc, (author, year) in values.items()
    ]  # fmt: skip
    resp = await kb.client.post(f"/v1/datasets/{kb.id}/documents/metadata", json={"operation_data": ops},
                                headers=kb.headers)  # fmt: skip
    assert resp.status_code == 200 and resp.json() == {"result": "success"}

    async def names(conditions: list[dict[str, Any]], logical: str = "and") -> set[str]:
        flt = {"logical_operator": logical, "conditions": conditions}
        records = await kb.records("cell heart ocean mitochondria", search_method="hybrid_search",
                                   metadata_filtering_conditions=flt)  # fmt: skip
        return {r["segment"]["document"]["name"] for r in records}

    assert await names([{"name": "author", "comparison_operator": "is", "value": "Curie"}]) == {"mito", "ocean"}
    assert await names([{"name": "year", "comparison_operator": ">", "value": 1900}]) == {"mito", "ocean"}
    assert await names(
        [{"name": "author", "comparison_operator": "is", "value": "Curie"},
         {"name": "year", "comparison_operator": "<", "value": 2000}]
    ) == {"ocean"}  # fmt: skip
    assert await names(
        [{"name": "author", "comparison_operator": "start with", "value": "Har"},
         {"name": "year", "comparison_operator": "≥", "value": 2001}], "or"
    ) == {"heart", "mito"}  # fmt: skip
    assert await names([{"name": "author", "comparison_operator": "in", "value": ["Darwin", "Nobody"]}]) == {"plants"}
    assert await names([{"name": "author", "comparison_operator": "is", "value": "Nobody"}]) == set()
    resp = await kb.retrieve("cell", metadata_filtering_conditions={"conditions": [{"name": "a",
                             "comparison_operator": "resembles", "value": 1}]})  # fmt: skip
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_param"


@pytest.fixture
def rerank_server() -> Iterator[FakeServer]:
    srv = FakeServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join()


async def test_reranking_through_an_http_reranker(kb: Kb, rerank_server: FakeServer) -> None:
    kb.core.dify_retrieval.reranker = HTTPReranker(rerank_server.base_url, "test-reranker", api_key="rk")
    query = "strongest chamber ventricle"
    model = {"reranking_provider_name": "x", "reranking_model_name": "y"}
    records = await kb.records(query, search_method="hybrid_search", reranking_enable=True, top_k=2,
                               reranking_model=model)  # fmt: skip
    assert rerank_server.requests and rerank_server.requests[0].body["query"] == query
    assert records[0]["segment"]["document"]["name"] == "heart"
    # the fake reranker scores the share of the query's words present: "strongest", "chamber", "ventricle" all are
    assert records[0]["score"] == 1.0
    assert len(records) <= 2
    thresholded = await kb.records(query, search_method="semantic_search", reranking_enable=True,
                                   score_threshold_enabled=True, score_threshold=0.5)  # fmt: skip
    assert [r["segment"]["document"]["name"] for r in thresholded] == ["heart"]


async def test_one_store_two_dialects(kb: Kb) -> None:
    """A Dify document is found by Dust's search, and a Dust document by Dify's retrieve."""
    core = kb.core
    ws = core.catalog.workspace(kb.ws_sid)
    ds = core.dify.dataset(ws, kb.id)
    space = core.catalog.global_space(ws)
    dust = f"/api/v1/w/{ws.sid}/spaces/{space.sid}/data_sources/{ds.sid}"
    resp = await kb.client.get(f"{dust}/search", params={"query": "mitochondria ATP", "top_k": 3},
                               headers=kb.headers)  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert resp.json()["documents"][0]["document_id"] == kb.docs["mito"]
    assert resp.json()["documents"][0]["title"] == "mito"
    resp = await kb.client.post(f"{dust}/documents/volcano-1", json={"text": "Volcanoes erupt magma and ash."},
                                headers=kb.headers)  # fmt: skip
    assert resp.status_code == 200, resp.text
    records = await kb.records("volcanoes magma", search_method="full_text_search")
    assert records[0]["segment"]["document"]["name"] == "volcano-1"
    assert records[0]["segment"]["content"].startswith("Volcanoes erupt magma")
    listed = await kb.client.get(f"/v1/datasets/{kb.id}/documents", headers=kb.headers)
    assert "volcano-1" in {d["name"] for d in listed.json()["data"]}
