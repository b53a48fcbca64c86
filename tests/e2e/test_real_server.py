"""End to end on the real parts: `alexandria` CLI, a real `alexandria serve` process over HTTP on loopback, the
real all-MiniLM-L6-v2 model on ONNX Runtime, SQLite on disk."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live import CLI, live_server, run_cli

pytestmark = pytest.mark.e2e

DOCS = {
    "photosynthesis": ("Plants convert sunlight, water and carbon dioxide into glucose and oxygen.", ["biology"]),
    "volcano": ("Magma rises through the crust and erupts as lava from a volcano.", ["geology"]),
    "mitochondria": ("The mitochondrion produces most of the cell's ATP through respiration.", ["biology"]),
    "inflation": ("Central banks raise interest rates to slow down rising consumer prices.", ["economics"]),
    "earthquake": ("Tectonic plates slip along faults and release energy as seismic waves.", ["geology"]),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str, str]]:
    data = tmp_path_factory.mktemp("e2e") / "data"
    env = {**os.environ, "ALEXANDRIA_EMBEDDER_THREADS": "1"}
    key = run_cli("keys", "create", "--data-dir", str(data), "--workspace", "acme", env=env)
    assert key.startswith("sk-")
    ds = run_cli("datasources", "create", "--data-dir", str(data), "--workspace", "acme", "notes", env=env)
    assert ds.startswith("dts_")
    with live_server(data, env) as live:
        yield live.base, key, ds, str(data)


def test_upsert_search_filter_delete_over_http(server: tuple[str, str, str, str]) -> None:
    base, key, ds, _ = server
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        spaces = http.get("/api/v1/w/acme/spaces").json()["spaces"]
        space = spaces[0]["sId"]
        root = f"/api/v1/w/acme/spaces/{space}/data_sources/{ds}"
        for doc_id, (text, tags) in DOCS.items():
            resp = http.post(f"{root}/documents/{doc_id}", json={"text": text, "tags": tags, "title": doc_id})
            assert resp.status_code == 200, resp.text
            assert len(resp.json()["document"]["chunks"]) == 1

        def top(query: str, **params: object) -> list[str]:
            resp = http.get(f"{root}/search", params={"query": query, "top_k": 5, **params})
            assert resp.status_code == 200, resp.text
            return [d["document_id"] for d in resp.json()["documents"]]

        # semantic match with no shared keywords
        assert top("how do cells make energy?", search_mode="vector")[0] == "mitochondria"
        assert top("why does the ground shake")[0] == "earthquake"
        assert top("volcano lava", search_mode="keyword")[0] == "volcano"
        assert top("monetary policy and the cost of living")[0] == "inflation"
        # filters exclude the right documents
        assert set(top("energy", tags_in="geology")) <= {"volcano", "earthquake"}
        assert "mitochondria" not in top("how do cells make energy?", tags_not="biology")
        assert top("cells", parents_in="photosynthesis") == ["photosynthesis"]
        # scores are cosine similarities for vector search
        resp = http.get(f"{root}/search", params={"query": "plants and sunlight", "top_k": 1, "search_mode": "vector"})
        score = resp.json()["documents"][0]["chunks"][0]["score"]
        assert 0.3 < score <= 1.0
        # delete removes the document from both indexes
        assert http.delete(f"{root}/documents/volcano").status_code == 200
        assert "volcano" not in top("volcano lava magma", search_mode="keyword")
        assert "volcano" not in top("volcano lava magma", search_mode="vector")


def test_cli_search_and_eval(server: tuple[str, str, str, str], tmp_path: Path) -> None:
    _, _, ds, data = server
    env = {**os.environ, "ALEXANDRIA_EMBEDDER_THREADS": "1"}
    line = run_cli("search", "--data-dir", data, "--workspace", "acme", "--data-source", ds, "photosynthesis glucose",
                   env=env)  # fmt: skip
    assert json.loads(line)["document_id"] in DOCS
    # a tiny BEIR-layout set: eval prints one JSON object with every mode and metric
    beir = tmp_path / "tiny"
    (beir / "qrels").mkdir(parents=True)
    corpus = [{"_id": k, "title": k, "text": v[0]} for k, v in DOCS.items()]
    (beir / "corpus.jsonl").write_text("\n".join(json.dumps(c) for c in corpus))
    queries = [{"_id": "q1", "text": "cellular respiration ATP"}, {"_id": "q2", "text": "lava eruption"}]
    (beir / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tmitochondria\t1\nq2\tvolcano\t1\n")
    result = json.loads(run_cli("eval", str(beir), "--cache-dir", str(tmp_path / "evaldata"), env=env))["tiny"]
    assert set(result) == {"keyword", "vector", "hybrid:confidence"}
    for mode in result.values():
        assert set(mode) == {"ndcg@10", "recall@10", "recall@100", "mrr"}
    assert result["hybrid:confidence"]["mrr"] == 1.0 and result["hybrid:confidence"]["recall@10"] == 1.0


def test_cli_ingest_while_the_server_runs(server: tuple[str, str, str, str], tmp_path: Path) -> None:
    base, key, ds, data = server
    env = {**os.environ, "ALEXANDRIA_EMBEDDER_THREADS": "1"}
    folder = tmp_path / "kb"
    (folder / "guides").mkdir(parents=True)
    (folder / "guides" / "sourdough.md").write_text("# Sourdough\nFeed the starter with flour and water daily.")
    (folder / "tides.txt").write_text("The moon's gravity pulls the oceans and causes tides.")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    done = subprocess.run(
        [*CLI, "ingest", "--data-dir", data, "--workspace", "acme", "--data-source", ds, "--tag", "kb", str(folder)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 stored, 0 unchanged, 0 failed" in done.stderr
    again = subprocess.run(
        [*CLI, "ingest", "--data-dir", data, "--workspace", "acme", "--data-source", ds, "--tag", "kb", str(folder)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert "0 stored, 2 unchanged" in again.stderr
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        root = f"/api/v1/w/acme/data_sources/{ds}"
        resp = http.get(
            f"{root}/search", params={"query": "why does the sea rise and fall", "top_k": 3, "tags_in": "kb"}
        )
        assert resp.status_code == 200, resp.text
        docs = resp.json()["documents"]
        assert [d["document_id"] for d in docs] == ["tides.txt", "guides/sourdough.md"]
        got = http.get(f"{root}/documents/guides%2Fsourdough.md").json()["document"]
        assert got["mime_type"] == "text/markdown" and "kb" in got["tags"]


def test_restricted_space_managed_source_and_view_over_http(server: tuple[str, str, str, str]) -> None:
    """The permission model end to end: CLI-made group, restricted space, member key, managed data source shared
    into the space through a custom view over a folder; semantic search through the view on the real model."""
    base, outsider_key, _, data = server
    env = {**os.environ, "ALEXANDRIA_EMBEDDER_THREADS": "1"}

    def cli(*args: str) -> str:
        return run_cli(*args, "--data-dir", data, "--workspace", "acme", env=env)

    cli("groups", "create", "research")
    space = cli("spaces", "create", "--restricted", "--group", "research", "Lab")
    member_key = cli("keys", "create", "--group", "research")
    system_key = cli("keys", "create", "--role", "system")
    drive = cli("datasources", "create", "--connector", "gdrive", "drive")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {system_key}"}, timeout=60) as http:
        root = f"/api/v1/w/acme/data_sources/{drive}"
        folder = {"timestamp": 1700000000000, "title": "Shared", "mime_type": "application/vnd.dust.folder"}
        assert http.post(f"{root}/folders/shared", json=folder).status_code == 200
        for doc_id, text, parents in (
            ("enzymes", "Enzymes lower the activation energy of chemical reactions in cells.", ["enzymes", "shared"]),
            ("payroll", "Salaries are paid on the last business day of each month.", ["payroll", "private"]),
        ):
            resp = http.post(f"{root}/documents/{doc_id}", json={"text": text, "parents": parents,
                                                                 "parent_id": parents[1]})  # fmt: skip
            assert resp.status_code == 200, resp.text
        tokens = http.post(f"{root}/tokenize", json={"text": "Enzymes catalyse"}).json()["tokens"]
        assert [t[1] for t in tokens][:2] == ["enzymes", "cat"] and all(isinstance(t[0], int) for t in tokens)
    view = cli("views", "create", "--space", "Lab", "--data-source", "drive", "--parent", "shared")

    search = f"/api/v1/w/acme/spaces/{space}/data_source_views/{view}/search"
    params: dict[str, str | int] = {"query": "how do catalysts speed up biochemistry", "top_k": 5}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {member_key}"}, timeout=60) as http:
        spaces = {s["sId"]: s for s in http.get("/api/v1/w/acme/spaces").json()["spaces"]}
        assert spaces[space]["isRestricted"] is True
        resp = http.get(search, params=params)
        assert resp.status_code == 200, resp.text
        assert [d["document_id"] for d in resp.json()["documents"]] == ["enzymes"]
        views = http.get(f"/api/v1/w/acme/spaces/{space}/data_source_views").json()["dataSourceViews"]
        assert [(v["sId"], v["category"], v["parentsIn"]) for v in views] == [(view, "managed", ["shared"])]
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {outsider_key}"}, timeout=60) as http:
        assert space not in {s["sId"] for s in http.get("/api/v1/w/acme/spaces").json()["spaces"]}
        refused = http.get(search, params=params)
        assert refused.status_code == 404 and refused.json()["error"]["type"] == "space_not_found"
