"""Conformance: OpenAI's own Python SDK (``openai`` 3.x, ``base_url`` pointed at the server) against a live
``alexandria serve`` with the real embedding model, over HTTP: files, vector stores, polling helpers, batches, search
with comparison and compound filters, auto-paging lists, updates, deletes, and errors as the SDK raises them. Plus
the README's snippet, a file found through the Dust and Dify doors, and a key bound to one data source confined on
this door."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest
from fpdf import FPDF
from mcp import Client as McpClient
from mcp.client.streamable_http import streamable_http_client
from openai import OpenAI

from tests.live import live_server, run_cli

pytestmark = pytest.mark.e2e

WORKSPACE = "oai-conformance"
README = Path(__file__).parents[2] / "README.md"

DOCS = {
    "photosynthesis.txt": (b"Plants convert sunlight, water and carbon dioxide into glucose and oxygen.",
                           {"topic": "biology", "year": 2021, "reviewed": True}),
    "volcano.md": (b"# Volcanoes\n\nMagma rises through the crust and erupts as lava from a volcano.",
                   {"topic": "geology", "year": 2023, "reviewed": False}),
    "mitochondria.txt": (b"The mitochondrion produces most of the cell's ATP through respiration.",
                         {"topic": "biology", "year": 2024, "reviewed": False}),
}  # fmt: skip


@dataclass(frozen=True)
class Server:
    base: str
    key: str
    bound_key: str
    user_key: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("openai") / "data"
    env = {**os.environ, "ALEXANDRIA_EMBEDDER_THREADS": "1"}
    key = run_cli("keys", "create", "--data-dir", str(data), "--workspace", WORKSPACE, "--role", "admin", env=env)
    user = run_cli("keys", "create", "--data-dir", str(data), "--workspace", WORKSPACE, "--role", "user", env=env)
    run_cli("datasources", "create", "--data-dir", str(data), "--workspace", WORKSPACE, "confined", env=env)
    bound = run_cli("keys", "create", "--data-dir", str(data), "--workspace", WORKSPACE, "--dataset", "confined",
                    env=env)  # fmt: skip
    with live_server(data, env) as live:
        yield Server(live.base, key, bound, user)
        while OPEN:
            OPEN.pop().close()


OPEN: list[OpenAI] = []  # the clients of the module's tests, closed with its server


def sdk(server: Server, key: str | None = None) -> OpenAI:
    client = OpenAI(base_url=f"{server.base}/v1", api_key=key or server.key, max_retries=0, timeout=120)
    OPEN.append(client)
    return client


def pdf_bytes(text: str) -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def test_the_readme_snippet_runs(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    section = README.read_text().split("## OpenAI SDK", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S)
    assert snippet is not None
    os.environ["ALEXANDRIA_URL"], os.environ["ALEXANDRIA_API_KEY"] = server.base, server.key
    namespace: dict[str, Any] = {}
    try:
        exec(compile(snippet.group(1), "README.md", "exec"), namespace)
        OPEN.append(namespace["client"])
    finally:
        del os.environ["ALEXANDRIA_URL"], os.environ["ALEXANDRIA_API_KEY"]
    printed = capsys.readouterr().out
    assert "handbook.txt: Every employee gets 25 vacation days a year." in printed, printed


def test_the_sdk_drives_files_stores_batches_and_search(server: Server) -> None:
    client = sdk(server)
    store = client.vector_stores.create(
        name="science", metadata={"owner": "lab"},
        chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 100}},
    )  # fmt: skip
    assert store.id.startswith("vs_") and store.name == "science" and store.metadata == {"owner": "lab"}
    ids: dict[str, str] = {}
    for name, (data, attributes) in DOCS.items():
        uploaded = client.files.create(file=(name, io.BytesIO(data)), purpose="assistants")
        assert uploaded.filename == name and uploaded.bytes == len(data) and uploaded.purpose == "assistants"
        done = client.vector_stores.files.create_and_poll(
            uploaded.id, vector_store_id=store.id, attributes=attributes, poll_interval_ms=100
        )
        assert done.status == "completed" and done.last_error is None, done
        ids[name] = uploaded.id
    quake = pdf_bytes("Tectonic plates slip along faults and release energy as seismic waves.")
    pdf = client.files.create(file=("earthquake.pdf", quake), purpose="assistants")
    batch = client.vector_stores.file_batches.create_and_poll(
        store.id, file_ids=[pdf.id], poll_interval_ms=100,
        chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}},
    )  # fmt: skip
    assert batch.status == "completed" and batch.file_counts.completed == 1, batch
    uploaded_batch = client.vector_stores.file_batches.upload_and_poll(
        store.id, files=[("inflation.md", io.BytesIO(b"Central banks raise interest rates to slow rising prices."))],
        poll_interval_ms=100,
    )  # fmt: skip
    assert uploaded_batch.status == "completed" and uploaded_batch.file_counts.total == 1
    in_batch = list(client.vector_stores.file_batches.list_files(uploaded_batch.id, vector_store_id=store.id))
    assert len(in_batch) == 1 and in_batch[0].status == "completed"
    ids["earthquake.pdf"], ids["inflation.md"] = pdf.id, in_batch[0].id

    def search(query: str, **kwargs: Any) -> list[str]:
        page = client.vector_stores.search(store.id, query=query, **kwargs)
        return list(dict.fromkeys(hit.filename for hit in page))  # one result per chunk: files in rank order

    assert search("how do cells make energy?", max_num_results=1) == ["mitochondria.txt"]
    assert search("seismic waves along faults", max_num_results=1) == ["earthquake.pdf"]
    assert search("energy", filters={"type": "eq", "key": "topic", "value": "geology"}) == ["volcano.md"]
    both = {"type": "and", "filters": [{"type": "eq", "key": "topic", "value": "biology"},
                                       {"type": "gte", "key": "year", "value": 2022}]}  # fmt: skip
    assert search("energy from sunlight", filters=both) == ["mitochondria.txt"]
    either = {"type": "or", "filters": [{"type": "eq", "key": "reviewed", "value": True},
                                        {"type": "in", "key": "topic", "value": ["geology"]}]}  # fmt: skip
    assert set(search("energy", filters=either)) == {"photosynthesis.txt", "volcano.md"}
    assert search("energy", filters={"type": "nin", "key": "topic", "value": ["biology", "geology"]}) == []
    page = client.vector_stores.search(store.id, query=["lava", "magma"], rewrite_query=True,
                                       ranking_options={"ranker": "none", "score_threshold": 0.0})  # fmt: skip
    assert page.data[0].filename == "volcano.md" and all(0 <= hit.score <= 1 for hit in page.data)
    everything = client.vector_stores.search(store.id, query="lava", max_num_results=50).data
    strict = client.vector_stores.search(store.id, query="lava", max_num_results=50,
                                         ranking_options={"score_threshold": 0.5}).data  # fmt: skip
    assert strict and all(hit.score >= 0.5 for hit in strict) and len(strict) < len(everything)

    # lists page with after/has_more; the SDK's auto-paging walks them all
    walked = [f.id for f in client.vector_stores.files.list(store.id, limit=2, order="asc")]
    assert sorted(walked) == sorted(ids.values()) and len(walked) == len(set(walked))
    first = client.vector_stores.files.list(store.id, limit=2)
    assert len(first.data) == 2 and first.has_more and first.has_next_page()
    assert {f.id for f in client.files.list(limit=1)} >= set(ids.values())
    assert store.id in [s.id for s in client.vector_stores.list(limit=1)]

    # retrieve, update, content, delete
    assert client.vector_stores.retrieve(store.id).file_counts.completed == len(ids)
    renamed = client.vector_stores.update(store.id, name="science 2", metadata={"owner": "lab", "v": "2"})
    assert renamed.name == "science 2" and renamed.metadata == {"owner": "lab", "v": "2"}
    volcano = ids["volcano.md"]
    updated = client.vector_stores.files.update(volcano, vector_store_id=store.id, attributes={"topic": "earth"})
    assert updated.attributes == {"topic": "earth"}
    assert search("lava", filters={"type": "eq", "key": "topic", "value": "earth"}) == ["volcano.md"]
    text = "".join(c.text for c in client.vector_stores.files.content(volcano, vector_store_id=store.id))
    assert "Magma rises" in text
    assert client.files.content(volcano).read() == DOCS["volcano.md"][0]
    assert client.files.retrieve(volcano).filename == "volcano.md"
    assert client.vector_stores.files.delete(volcano, vector_store_id=store.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(volcano, vector_store_id=store.id)
    assert client.files.delete(volcano).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(volcano)
    assert client.vector_stores.delete(store.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)


def test_errors_are_the_sdks_exceptions(server: Server) -> None:
    client = sdk(server)
    store = client.vector_stores.create(name="errors")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve("vs_does-not-exist")
    with pytest.raises(openai.BadRequestError) as bad:
        client.vector_stores.search(store.id, query="x", max_num_results=51)
    assert bad.value.body["param"] == "max_num_results"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.create(chunking_strategy={"type": "static", "static": {
            "max_chunk_size_tokens": 400, "chunk_overlap_tokens": 300}})  # fmt: skip
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(store.id, query="x", filters={"type": "gt", "key": "year", "value": "soon"})
    with pytest.raises(openai.AuthenticationError):
        sdk(server, "sk-not-a-key").vector_stores.list()
    with pytest.raises(openai.PermissionDeniedError):
        sdk(server, server.user_key).vector_stores.list()
    with pytest.raises(openai.PermissionDeniedError):
        sdk(server, server.bound_key).vector_stores.create(name="not allowed")
    # unknown fields the SDK sends through extra_body are tolerated
    assert client.vector_stores.search(store.id, query="x", extra_body={"search_mode": "hybrid"}).data == []


def test_a_file_uploaded_here_is_found_through_dust_and_dify(server: Server) -> None:
    client = sdk(server)
    store = client.vector_stores.create(name="crossdoor")
    text = b"The lighthouse of Alexandria guided sailors into the harbour for centuries."
    done = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("pharos.txt", io.BytesIO(text)))
    assert done.status == "completed"
    uuid = store.id.removeprefix("vs_")
    with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {server.key}"}, timeout=60) as http:
        records = http.post(f"/v1/datasets/{uuid}/retrieve", json={"query": "lighthouse sailors harbour"}).json()
        assert records["records"][0]["segment"]["document"]["id"] == done.id.removeprefix("file-")
        name = http.get(f"/v1/datasets/{uuid}").json()["name"]
        sources = http.get(f"/api/v1/w/{WORKSPACE}/data_sources").json()["data_sources"]
        ds = next(d for d in sources if d["name"] == name)
        space = http.get(f"/api/v1/w/{WORKSPACE}/spaces").json()["spaces"][0]["sId"]
        found = http.get(f"/api/v1/w/{WORKSPACE}/spaces/{space}/data_sources/{ds['sId']}/search",
                         params={"query": "lighthouse harbour", "top_k": 3}).json()  # fmt: skip
        assert found["documents"][0]["document_id"] == done.id.removeprefix("file-")
        assert "lighthouse" in found["documents"][0]["chunks"][0]["text"]


@pytest.mark.anyio
async def test_a_file_uploaded_here_is_found_and_read_through_mcp(server: Server) -> None:
    client = sdk(server)
    store = client.vector_stores.create(name="crossdoor-mcp")
    text = b"The Antikythera mechanism predicted eclipses with bronze gears."
    done = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("gears.txt", io.BytesIO(text)))
    assert done.status == "completed"
    document_id = done.id.removeprefix("file-")
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {server.key}"}, timeout=120) as http,
        McpClient(streamable_http_client(f"{server.base}/mcp", http_client=http)) as mcp,  # type: ignore[arg-type]
    ):
        listed = await mcp.call_tool("list_knowledge_bases", {})
        assert not listed.is_error and listed.structured_content is not None
        uuid = store.id.removeprefix("vs_")  # the store's Dify dataset id
        kb = next(k for k in listed.structured_content["knowledge_bases"] if k["dify_dataset_id"] == uuid)
        found = await mcp.call_tool("search_knowledge", {"query": "eclipse gears", "knowledge_base_ids": [kb["id"]]})
        assert not found.is_error and found.structured_content is not None
        assert found.structured_content["hits"][0]["document_id"] == document_id
        read = await mcp.call_tool("read_document", {"knowledge_base_id": kb["id"], "document_id": document_id})
        assert not read.is_error and read.structured_content is not None
        assert read.structured_content["text"] == text.decode()


def test_a_bound_key_is_confined_to_its_data_source(server: Server) -> None:
    admin, bound = sdk(server), sdk(server, server.bound_key)
    other = admin.vector_stores.create(name="elsewhere")
    secret = admin.vector_stores.files.upload_and_poll(
        vector_store_id=other.id, file=("secret.txt", io.BytesIO(b"the secret recipe"))
    )
    mine = list(bound.vector_stores.list())
    assert len(mine) == 1 and mine[0].name == "confined"
    with pytest.raises(openai.NotFoundError):
        bound.vector_stores.retrieve(other.id)
    with pytest.raises(openai.NotFoundError):
        bound.vector_stores.search(other.id, query="secret recipe")
    with pytest.raises(openai.NotFoundError):
        bound.files.retrieve(secret.id)
    with pytest.raises(openai.NotFoundError):
        bound.vector_stores.files.create(mine[0].id, file_id=secret.id)
    own = bound.vector_stores.files.upload_and_poll(
        vector_store_id=mine[0].id, file=("own.txt", io.BytesIO(b"our own secret recipe"))
    )
    assert own.status == "completed"
    hits = bound.vector_stores.search(mine[0].id, query="secret recipe").data
    assert [h.file_id for h in hits] == [own.id]
    assert [f.id for f in bound.files.list()] == [own.id]
