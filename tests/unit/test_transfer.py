"""`alexandria export` / `alexandria import`: a workspace moved between stores (SQLite -> PostgreSQL, PostgreSQL ->
SQLite, and between two stores of one kind) keeps every id its clients know, its API keys, its vectors (nothing is
embedded again) and its behaviour.

Each move builds one workspace through the services and the HTTP API with the fake embedder (Dust documents over
several chunks, a folder, a restricted space with a group and a member key, a custom view, a table with rows, an
async upsert still queued; a Dify dataset with a hierarchical document, a paragraph document with a metadata value,
an uploaded file, a tag, a dataset-bound key, a Dify document still waiting), exports it, imports it into a fresh
target, then compares through the services and the API, with the source's API keys:

* listings (Dust spaces, views, documents, folders, tables and rows; Dify datasets, documents, segments with their
  child chunks, metadata fields, tags) are equal to the source's, JSON for JSON;
* stored vectors are bit for bit the source's; vector search and semantic retrieval rank as on the source;
* keyword and hybrid search (Dust) and full-text and hybrid retrieval (Dify) rank and score exactly as the same
  workspace built natively on the target's backend (BM25 differs between the two engines' text analysis, so the
  target's own backend is the reference), scores within 1e-5;
* the moved queue indexes what was still waiting, and the target's search structures are consistent (BM25
  statistics on PostgreSQL; keyword index and HNSW cache on SQLite).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from click.testing import CliRunner

from alexandria import transfer
from alexandria.api.app import create_asgi
from alexandria.cli import main
from alexandria.config import Settings
from alexandria.domain.filters import DocumentFilter, FilterSet
from alexandria.domain.models import DataSource, Role, SearchMode
from alexandria.domain.tables import TableRow
from alexandria.errors import AlreadyExists, InvalidRequest
from alexandria.ingest.chunkers import Section
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest
from alexandria.services.folders import FolderRequest
from alexandria.services.search import SearchRequest
from alexandria.services.tables import TableRef, TableUpsert
from alexandria.storage.common import transfer_rows
from alexandria.storage.sqlite.store import SqliteStore
from devtools.embedded_pg import EmbeddedPostgres
from tests.fakes import HashingEmbedder

pytestmark = pytest.mark.anyio

WS = "wmove"
T0 = 1_700_000_000_000
HIERARCHICAL = {
    "mode": "hierarchical",
    "rules": {
        "pre_processing_rules": [],
        "segmentation": {"separator": "\n\n", "max_tokens": 500},
        "parent_mode": "paragraph",
        "subchunk_segmentation": {"separator": "\n", "max_tokens": 100},
    },
}
PARAGRAPHS = {"mode": "custom", "rules": {"pre_processing_rules": [], "segmentation": {"separator": "\n\n",
                                                                                      "max_tokens": 100}}}  # fmt: skip
DUST_DOCS = {
    "animals/cats.md": ("Cats", "Cats purr and sleep all day. A cat chases mice in the barn at night."),
    "animals/dogs.md": ("Dogs", "Dogs bark at the mailman. A loyal dog fetches sticks and guards the farm."),
    "sea/whales.md": (
        "Whales",
        " ".join(
            f"Whales sing songs number {i} across the cold ocean while krill swarm below the blue waves."
            for i in range(6)
        ),
    ),
    "sea/dolphins.md": ("Dolphins", "Dolphins swim fast in warm seas and play with waves near the boats."),
}
HERDS = "Yaks live in the mountains.\nYaks give milk.\n\nZebus pull carts.\nZebus have humps.\nZebus meet yaks."
ZOO = "Lions roar at dawn.\n\nOtters float on their backs.\n\nPenguins waddle on the ice and swim in cold water."
QUERIES = ("night farm ocean waves", "cats mice", "dog farm", "whales ocean songs", "swim cold water", "yaks milk",
           "zebus carts", "otters", "kestrels hover", "quetzals nest", "herons wade", "marmots whistle")  # fmt: skip
DIFY_METHODS = ("semantic_search", "full_text_search", "hybrid_search")
GATHER_METHODS = ("full_text_search", "hybrid_search")


# --- places to put stores ---------------------------------------------------------------------------------------
@pytest.fixture
def new_settings(tmp_path: Path, pg_server: EmbeddedPostgres) -> Iterator[Callable[[str], Settings]]:
    """A factory of settings for fresh, empty stores of a kind (each PostgreSQL one in a database of its own)."""
    databases: list[str] = []
    made = 0

    def make(kind: str) -> Settings:
        nonlocal made
        made += 1
        data_dir = tmp_path / f"store{made}"
        url = None
        if kind == "postgres":
            name = f"t_{uuid.uuid4().hex[:20]}"
            url = pg_server.create_database(name)
            databases.append(name)
        values: dict[str, Any] = {"data_dir": data_dir, "database_url": url, "max_body_mb": 2, "max_document_mb": 0.5}
        return Settings(**values)

    yield make
    for name in databases:
        pg_server.drop_database(name)


def open_core(settings: Settings) -> Core:
    core = Core(settings)
    fake = HashingEmbedder()
    core.embedders.register("fake", fake)
    core.embedders.register("minilm", fake)  # the default embedder of Dify datasets
    return core


@asynccontextmanager
async def app(settings: Settings) -> AsyncIterator[tuple[Core, httpx.AsyncClient]]:
    core = open_core(settings)
    try:
        transport = httpx.ASGITransport(app=create_asgi(settings, core))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield core, client
    finally:
        core.close()


def drain(core: Core) -> int:
    return core.jobs.pool(0).drain()


def h(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# --- the workspace ----------------------------------------------------------------------------------------------
@dataclass
class Secrets:
    builder: str
    member: str
    system: str
    dataset: str  # bound to the Dify dataset
    disabled: str


async def ok(resp: Any) -> Any:
    response: httpx.Response = await resp
    assert response.status_code in (200, 201, 204), response.text
    return response.json() if response.content else None


async def build(core: Core, client: httpx.AsyncClient) -> Secrets:
    """The workspace every move carries (deterministic but for generated ids and creation times)."""
    ws, _ = core.catalog.ensure_workspace(WS)
    _, builder = core.keys.create(ws, Role.BUILDER, "builder")
    member_key, member = core.keys.create(ws, Role.BUILDER, "member")
    _, system = core.keys.create(ws, Role.SYSTEM, "system")
    gone, disabled = core.keys.create(ws, Role.USER, "gone")
    core.store.disable_api_key(ws.id, gone.id)
    core.spaces.create_group(ws, "team")
    core.spaces.add_key(ws, "team", member_key)
    secret_space = core.spaces.create_space(ws, "Secret", restricted=True, groups=["team"])
    docs = core.catalog.create_data_source(ws, "docs", embedder="fake", description="Dust documents")
    private = core.catalog.create_data_source(ws, "private", space=secret_space, embedder="fake")

    core.folders.upsert(docs, FolderRequest("animals", "Animals", "application/vnd.dust.folder", timestamp=T0), T0)
    for i, (doc_id, (title, text)) in enumerate(DUST_DOCS.items()):
        folder = doc_id.split("/")[0]
        req = UpsertRequest(doc_id, Section(None, text, ()), title=title, tags=(f"kind:{folder}", "lang:en"),
                            parents=(doc_id, folder), parent_id=folder, timestamp=T0 + i,
                            source_url=f"https://example.com/{doc_id}")  # fmt: skip
        core.documents.upsert(docs, req, T0 + i)
    core.documents.upsert(private, UpsertRequest("memo", Section("Memo", "Herons wade in the marsh.", ())), T0)
    core.spaces.create_view(ws, docs, secret_space, ["animals"])

    table = core.tables.upsert(docs, TableUpsert("zoo_stock", "Animals in stock", table_id="stock", timestamp=T0), T0)
    rows = [TableRow("r1", {"name": "cat", "count": 3, "weight": 4.5}),
            TableRow("r2", {"name": "dog", "count": 2, "weight": 1e20}),
            TableRow("r3", {"name": "whale", "count": 1, "weight": None})]  # fmt: skip
    core.tables.upsert_rows(docs, table.table_id, rows, truncate=False)
    core.tables.upsert_rows(docs, table.table_id, [TableRow("r2", {"name": "dog", "count": 5, "weight": 2.0})], False)

    body = {"indexing_technique": "high_quality"}
    pastures = await ok(client.post("/v1/datasets", json={"name": "pastures", **body}, headers=h(builder)))
    herds_url = f"/v1/datasets/{pastures['id']}"
    herds = await ok(
        client.post(
            f"{herds_url}/document/create-by-text",
            headers=h(builder),
            json={
                **body,
                "name": "herds",
                "text": HERDS,
                "doc_form": "hierarchical_model",
                "process_rule": HIERARCHICAL,
            },
        )
    )
    kb = await ok(client.post("/v1/datasets", json={"name": "kb", **body}, headers=h(builder)))
    url = f"/v1/datasets/{kb['id']}"
    zoo = await ok(client.post(f"{url}/document/create-by-text", headers=h(builder), json={
        **body, "name": "zoo", "text": ZOO, "process_rule": PARAGRAPHS}))  # fmt: skip
    files = {"file": ("birds.txt", b"Kestrels hover over fields.\n\nOwls hunt at night.", "text/plain")}
    await ok(client.post(f"{url}/document/create-by-file", files=files, data={"data": json.dumps(body)},
                         headers=h(builder)))  # fmt: skip
    drain(core)
    herds_id, zoo_id = herds["document"]["id"], zoo["document"]["id"]
    [yaks, _] = (await ok(client.get(f"{herds_url}/documents/{herds_id}/segments", headers=h(builder))))["data"]
    await ok(client.post(f"{herds_url}/documents/{herds_id}/segments/{yaks['id']}/child_chunks",
                         json={"content": "Quetzals nest nearby."}, headers=h(builder)))  # fmt: skip
    field = await ok(client.post(f"{url}/metadata", json={"name": "author", "type": "string"}, headers=h(builder)))
    op = {"document_id": zoo_id, "metadata_list": [{**field, "value": "Ada"}]}
    await ok(client.post(f"{url}/documents/metadata", json={"operation_data": [op]}, headers=h(builder)))
    tag = await ok(client.post("/v1/datasets/tags", json={"name": "wildlife"}, headers=h(builder)))
    await ok(client.post("/v1/datasets/tags/binding", json={"tag_ids": [tag["id"]], "target_id": kb["id"]},
                         headers=h(builder)))  # fmt: skip
    ds = core.store.get_data_source_by_uuid(ws.id, kb["id"])
    assert ds is not None
    _, dataset = core.keys.create(ws, Role.BUILDER, "kb only", data_source_id=ds.id)

    # still waiting when exported: an async Dust upsert and a Dify document (their jobs move with them)
    core.documents.upsert_async(docs, UpsertRequest("late", Section(None, "Marmots whistle on rocks.", ())), T0 + 9)
    await ok(
        client.post(
            f"{url}/document/create-by-text",
            headers=h(builder),
            json={
                **body,
                "name": "late dify",
                "text": "Marmots whistle in alpine meadows.",
                "process_rule": PARAGRAPHS,
            },
        )
    )
    return Secrets(builder, member, system, dataset, disabled)


# --- reading a store through the API and the services -----------------------------------------------------------
async def listings(core: Core, client: httpx.AsyncClient, s: Secrets) -> dict[str, Any]:
    """Everything the clients list (JSON as served), read with the source's keys."""
    out: dict[str, Any] = {}
    dust = f"/api/v1/w/{WS}"
    out["spaces"] = await ok(client.get(f"{dust}/spaces", headers=h(s.builder)))
    out["member_spaces"] = await ok(client.get(f"{dust}/spaces", headers=h(s.member)))
    for space in out["member_spaces"]["spaces"]:
        sid = space["sId"]
        out[f"views {sid}"] = await ok(client.get(f"{dust}/spaces/{sid}/data_source_views", headers=h(s.member)))
        found = await ok(client.get(f"{dust}/spaces/{sid}/data_sources", headers=h(s.member)))
        for ds in found["data_sources"]:
            base = f"{dust}/spaces/{sid}/data_sources/{ds['sId']}"
            out[f"docs {ds['name']}"] = await ok(client.get(f"{base}/documents", headers=h(s.member)))
            out[f"folders {ds['name']}"] = await ok(client.get(f"{base}/folders", headers=h(s.member)))
            tables = await ok(client.get(f"{base}/tables", headers=h(s.member)))
            out[f"tables {ds['name']}"] = tables
            for t in tables["tables"]:
                out[f"rows {t['table_id']}"] = await ok(client.get(f"{base}/tables/{t['table_id']}/rows",
                                                                   headers=h(s.member)))  # fmt: skip
            for doc_id in DUST_DOCS if ds["name"] == "docs" else ():
                out[f"doc {doc_id}"] = await ok(client.get(f"{base}/documents/{doc_id}", headers=h(s.member)))
    datasets = await ok(client.get("/v1/datasets", headers=h(s.builder)))
    out["datasets"] = datasets
    out["tags"] = await ok(client.get("/v1/datasets/tags", headers=h(s.builder)))
    for kb in datasets["data"]:
        url = f"/v1/datasets/{kb['id']}"
        out[f"dataset {kb['name']}"] = await ok(client.get(url, headers=h(s.builder)))
        out[f"metadata {kb['name']}"] = await ok(client.get(f"{url}/metadata", headers=h(s.builder)))
        documents = await ok(client.get(f"{url}/documents", headers=h(s.builder)))
        out[f"documents {kb['name']}"] = documents
        for doc in documents["data"]:
            out[f"document {doc['name']}"] = await ok(client.get(f"{url}/documents/{doc['id']}", headers=h(s.builder)))
            out[f"segments {doc['name']}"] = await ok(client.get(f"{url}/documents/{doc['id']}/segments",
                                                                 headers=h(s.builder)))  # fmt: skip
        bound = await client.get(f"{url}/documents", headers=h(s.dataset))  # the key bound to "kb" only
        out[f"bound key {kb['name']}"] = (bound.status_code, bound.json() if bound.status_code == 200 else None)
    return out


Ranked = list[tuple[str, str, float]]  # (document title or name, chunk or segment text, score), best first


FILTERS = {  # none; under a folder (as the custom view restricts); by tag
    "": FilterSet(),
    " in animals": FilterSet((DocumentFilter(parents_in=("animals",)),)),
    " tagged sea": FilterSet((DocumentFilter(tags_in=("kind:sea",)),)),
}


def dust_search(core: Core) -> dict[str, Ranked]:
    ws = core.catalog.workspace(WS)
    out: dict[str, Ranked] = {}
    for ds in core.store.list_data_sources(ws.id, None):
        if ds.dify:
            continue
        for query in QUERIES:
            for mode in SearchMode:
                for name, filters in FILTERS.items():
                    hits = core.search.search(ds, SearchRequest(query, 8, mode, filters))
                    out[f"{ds.name} {mode.value} {query}{name}"] = [
                        (r.document.title, c.text, float(c.score or 0.0)) for r in hits for c in r.chunks
                    ]
    return out


async def dify_retrieve(core: Core, client: httpx.AsyncClient, s: Secrets) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kb in (await ok(client.get("/v1/datasets", headers=h(s.builder))))["data"]:
        for method in DIFY_METHODS:
            for query in QUERIES:
                model = {"search_method": method, "reranking_enable": False, "top_k": 20,
                         "score_threshold_enabled": False}  # fmt: skip
                body = await ok(client.post(f"/v1/datasets/{kb['id']}/retrieve", headers=h(s.builder),
                                            json={"query": query, "retrieval_model": model}))  # fmt: skip
                out[f"{kb['name']} {method} {query}"] = body["records"]
    return out


def ranked(records: list[dict[str, Any]], ids: bool = False) -> Ranked:
    """Retrieval records as a ranking; with ``ids``, hits are named by their document and segment ids too."""

    def name(r: dict[str, Any], key: str, what: str) -> str:
        return f"{r[key]['id']} {r[key][what]}" if ids else str(r[key][what])

    def segment(r: dict[str, Any]) -> str:
        # a document indexed after the move gets its segments (and their ids) from the store that indexed it
        late = r["segment"]["document"]["name"] == "late dify"
        return str(r["segment"]["content"]) if late else name(r, "segment", "content")

    return [(name(r["segment"], "document", "name"), segment(r), float(r["score"])) for r in records]


def assert_same_ranking(got: Ranked, want: Ranked, what: str) -> None:
    """Same hits in the same order with scores within 1e-5 (hits of exactly equal score may come in any order)."""
    assert len(got) == len(want), (what, got, want)
    for g, w in zip(got, want, strict=True):
        assert g[2] == pytest.approx(w[2], abs=1e-5), (what, got, want)

    def tie_groups(hits: Ranked) -> list[list[tuple[str, str]]]:
        groups: list[list[tuple[str, str]]] = []
        last: float | None = None
        for title, text, score in hits:
            if last is None or abs(score - last) > 1e-6:
                groups.append([])
                last = score
            groups[-1].append((title, text))
        return [sorted(g) for g in groups]

    assert tie_groups(got) == tie_groups(want), (what, got, want)


def stored_vectors(core: Core) -> dict[tuple[str, str, str], bytes]:
    ws = core.catalog.workspace(WS)
    out: dict[tuple[str, str, str], bytes] = {}
    for ds in core.store.list_data_sources(ws.id, None):
        docs, _ = core.store.list_documents(ds, None, 1000, 0)
        for doc in docs:
            for chunk_hash, vec in core.store.vectors_by_chunk_hash(ds, doc.document_id).items():
                out[(ds.sid, doc.document_id, chunk_hash)] = np.asarray(vec, dtype="<f4").tobytes()
    return out


def model_state(core: Core) -> dict[str, Any]:
    """The workspace's objects through the Store protocol, internal ids left out."""
    ws = core.catalog.workspace(WS)

    internal = {"id", "pk", "workspace_id", "data_source_id", "space_id", "document_pk", "segment_pk"}

    def strip(value: Any, drop: set[str]) -> Any:
        if isinstance(value, dict):
            return {k: strip(v, drop) for k, v in value.items() if k not in drop}
        if isinstance(value, list | tuple):
            return [strip(v, drop) for v in value]
        return value

    def plain(obj: Any, *drop: str) -> dict[str, Any]:
        out: dict[str, Any] = strip(asdict(obj), internal | set(drop))
        return out

    spaces = {s.id: s.sid for s in core.store.list_spaces(ws.id)}
    sources = core.store.list_data_sources(ws.id, None)
    out: dict[str, Any] = {
        "spaces": [plain(s) for s in core.store.list_spaces(ws.id)],
        "groups": [plain(g) for g in core.store.list_groups(ws.id)],
        "views": [(plain(v), spaces[v.space_id]) for v in core.store.list_views(ws.id)],
        "keys": [plain(k) for k in core.store.list_api_keys(ws.id)],
        "sources": [(plain(ds), spaces[ds.space_id]) for ds in sources],
        "tags": [plain(t) for t in core.store.list_tags(ws.id)],
    }
    for ds in sources:
        docs, _ = core.store.list_documents(ds, None, 1000, 0)
        out[f"docs {ds.sid}"] = [(plain(d), d.doc_metadata, d.dify) for d in docs]
        out[f"texts {ds.sid}"] = [core.store.documents_by_pk([d.pk], True)[d.pk].text for d in docs]
        out[f"segments {ds.sid}"] = [[plain(seg) for seg in core.store.document_segments(d.pk)] for d in docs]
        out[f"folders {ds.sid}"] = [plain(f) for f in core.store.list_folders(ds)]
        out[f"tables {ds.sid}"] = [plain(t) for t in core.store.list_tables(ds)]
        out[f"fields {ds.sid}"] = [(plain(f), n) for f, n in core.store.list_metadata_fields(ds)]
        live = [j for j in core.store.list_jobs(ds.id) if j.state.value in ("queued", "running")]
        out[f"jobs {ds.sid}"] = [plain(j, "created_at", "updated_at", "run_after", "lease_until") for j in live]
    return out


# --- checks of the target's search structures -------------------------------------------------------------------
def check_target_structures(settings: Settings, core: Core) -> None:
    ws = core.catalog.workspace(WS)
    sources = core.store.list_data_sources(ws.id, None)
    url = settings.resolved_database_url()
    if url.startswith("postgresql"):
        with psycopg.connect(url) as conn:
            for ds in sources:
                row = conn.execute(
                    "SELECT d.chunk_total, d.chunk_length_total, d.stats_version, "
                    "(SELECT count(*) FROM chunks c WHERE c.data_source_id = d.id), "
                    "(SELECT coalesce(sum(length), 0) FROM chunks c WHERE c.data_source_id = d.id), "
                    "(SELECT count(*) FROM pg_indexes WHERE indexname = %s) FROM data_sources d WHERE d.id = %s",
                    (f"chunks_hnsw_{ds.id}", ds.id),
                ).fetchone()
                assert row is not None
                total, length_total, version, count, length_sum, hnsw = row
                assert (total, length_total) == (count, length_sum), ds.name  # BM25 statistics in step
                assert version > 0 or count == 0
                assert hnsw == 1, ds.name  # the data source's partial HNSW index
        return
    assert isinstance(core.store, SqliteStore)
    path = Path(url[len("sqlite:///") :])
    with sqlite3.connect(path) as conn:
        for ds in sources:
            chunk_ids = {r[0] for r in conn.execute("SELECT id FROM chunks WHERE data_source_id = ?", (ds.id,))}
            count = len(chunk_ids)
            (version,) = conn.execute("SELECT vector_version FROM data_sources WHERE id = ?", (ds.id,)).fetchone()
            keywords = core.store.keywords.get(ds.id)  # built by the import, in step, holding exactly these chunks
            assert (keywords.version, set(keywords.ids())) == (version, chunk_ids), ds.name
            index = core.store.vectors.get(ds.id, ds.dim)
            assert (index.version, len(index)) == (version, count), ds.name  # HNSW cache built and in step


# --- the moves ----------------------------------------------------------------------------------------------------
def export_to(core: Core, out: io.StringIO) -> dict[str, int]:
    return transfer.export_workspace(core.store, WS, out, source="test", now_ms=T0)


MOVES = [("sqlite", "postgres"), ("postgres", "sqlite"), ("sqlite", "sqlite"), ("postgres", "postgres")]


@pytest.mark.parametrize(("source", "target"), MOVES, ids=[f"{a}-to-{b}" for a, b in MOVES])
async def test_a_moved_workspace_works_as_before(
    source: str, target: str, new_settings: Callable[[str], Settings]
) -> None:
    src_settings, ref_settings, dst_settings = new_settings(source), new_settings(target), new_settings(target)
    buf = io.StringIO()
    async with app(src_settings) as (src, src_client):
        secrets = await build(src, src_client)
        counts = export_to(src, buf)
        assert counts["documents"] == 10 and counts["jobs"] == 2 and counts["files"] == 1
        assert counts["chunks"] > counts["documents"] and counts["child_chunks"] >= 6
        before = await listings(src, src_client, secrets)
        src_model = model_state(src)
        src_vectors = stored_vectors(src)
        src_jobs = drain(src)
        src_dust = dust_search(src)
        src_dify = await dify_retrieve(src, src_client, secrets)
    async with app(ref_settings) as (ref, ref_client):
        ref_secrets = await build(ref, ref_client)
        drain(ref)
        ref_dust = dust_search(ref)
        ref_dify = await dify_retrieve(ref, ref_client, ref_secrets)

    buf.seek(0)
    async with app(dst_settings) as (dst, dst_client):
        ws = transfer.import_workspace(dst.store, buf)
        assert ws.sid == WS
        check_target_structures(dst_settings, dst)
        assert model_state(dst) == src_model  # every object, every moved id and timestamp; the queue's live jobs
        assert stored_vectors(dst) == src_vectors  # bit for bit: nothing embedded again
        assert await listings(dst, dst_client, secrets) == before  # what every client sees, with the old keys
        for bad in (secrets.disabled, "sk-nope"):
            resp = await dst_client.get("/v1/datasets", headers=h(bad))
            assert resp.status_code == 401
        resp = await dst_client.get(f"/api/v1/w/{WS}/spaces", headers=h(secrets.member))
        assert "Secret" in [s["name"] for s in resp.json()["spaces"]]  # the member key keeps its group

        fake = dst.embedders.get("fake")
        assert isinstance(fake, HashingEmbedder) and fake.calls == []
        assert drain(dst) == src_jobs == 2  # the moved queue indexes what was waiting
        check_target_structures(dst_settings, dst)
        dst_dust = dust_search(dst)
        dst_dify = await dify_retrieve(dst, dst_client, secrets)

        docs = dst.catalog.data_source(dst.catalog.workspace(WS), "docs")
        result = dst.tables.query([TableRef(docs, "stock")], "SELECT name, count, weight FROM zoo_stock ORDER BY name")
        assert result.rows == [{"name": "cat", "count": 3, "weight": 4.5}, {"name": "dog", "count": 5, "weight": 2.0},
                               {"name": "whale", "count": 1, "weight": None}]  # fmt: skip

    for key, want in src_dust.items():  # vector search: as on the source; keyword and hybrid: as built here
        assert_same_ranking(dst_dust[key], want if " vector " in key else ref_dust[key], key)
    for mode in SearchMode:  # the filters hold on the target (document parents and tags moved)
        found = {f: {t for t, _, _ in dst_dust[f"docs {mode.value} night farm ocean waves{f}"]} for f in FILTERS}
        assert found[""] >= {"Cats", "Dogs", "Whales", "Dolphins"}
        assert (found[" in animals"], found[" tagged sea"]) == ({"Cats", "Dogs"}, {"Whales", "Dolphins"})
    for key, records in src_dify.items():
        if " semantic_search " in key:  # the same segments (same ids) of the same documents, as on the source
            assert_same_ranking(ranked(dst_dify[key], ids=True), ranked(records, ids=True), key)
        else:
            assert_same_ranking(ranked(dst_dify[key]), ranked(ref_dify[key]), key)
    assert all(dst_dify[f"pastures {m} zebus carts"] and dst_dify[f"kb {m} otters"] for m in DIFY_METHODS)


# --- the export's snapshot, the queue, refusals and failures ----------------------------------------------------
KINDS = ("sqlite", "postgres")


def small(core: Core) -> tuple[DataSource, str]:
    """A workspace with one data source of two documents and a key; returns the data source and the key."""
    ws, _ = core.catalog.ensure_workspace(WS)
    ds = core.catalog.create_data_source(ws, "docs", embedder="fake")
    for doc_id, (title, text) in list(DUST_DOCS.items())[:2]:
        core.documents.upsert(ds, UpsertRequest(doc_id, Section(None, text, ()), title=title), T0)
    _, secret = core.keys.create(ws, Role.BUILDER)
    return ds, secret


def export_text(core: Core) -> str:
    buf = io.StringIO()
    export_to(core, buf)
    return buf.getvalue()


@pytest.mark.parametrize("kind", KINDS)
def test_export_reads_one_snapshot(kind: str, new_settings: Callable[[str], Settings]) -> None:
    core = open_core(new_settings(kind))
    try:
        ds, _ = small(core)
        rows = core.store.iter_workspace_rows(WS)
        first, counts = next(rows)  # the snapshot is taken
        assert (first, counts["documents"]) == (transfer_rows.COUNTS, 2)
        core.documents.upsert(ds, UpsertRequest("new", Section(None, "Newts swim.", ())), T0)
        core.documents.delete(ds, "animals/cats.md")
        docs = [r["document_id"] for t, r in rows if t == "documents"]
        assert docs == ["animals/cats.md", "animals/dogs.md"]  # as they were when the export began
        assert [r["document_id"] for t, r in core.store.iter_workspace_rows(WS) if t == "documents"] == [
            "animals/dogs.md",
            "new",
        ]
    finally:
        core.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_export_pages_give_the_same_rows(
    kind: str, new_settings: Callable[[str], Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiny pages (every table read a row or two at a time, each document's dependents read alone) export exactly
    the rows the default pages do, in the same order."""
    async with app(new_settings(kind)) as (core, client):
        await build(core, client)
        whole = list(core.store.iter_workspace_rows(WS))
        specs = tuple(dataclasses.replace(spec, page=1 + i % 2) for i, spec in enumerate(transfer_rows.SPECS))
        monkeypatch.setattr(transfer_rows, "SPECS", specs)
        monkeypatch.setattr(transfer_rows, "SPEC", {spec.table: spec for spec in specs})
        monkeypatch.setattr(transfer_rows, "DOCUMENT_CHUNK_BUDGET", 1)
        paged = list(core.store.iter_workspace_rows(WS))
    assert paged == whole
    tables = [t for t, _ in whole]
    assert tables.count("documents") == 10 and tables.count("chunks") > 10 and tables.count("table_rows") == 3
    for i, (table, row) in enumerate(whole):  # each document's dependents follow it
        if table in transfer_rows.DEPENDENTS:
            owner = next(r for t, r in reversed(whole[:i]) if t == "documents")
            assert row.get("document", owner["uuid"]) == owner["uuid"]


@pytest.mark.parametrize("kind", KINDS)
def test_live_jobs_move_as_queued_and_waiting_documents_get_one(
    kind: str, new_settings: Callable[[str], Settings]
) -> None:
    src, dst = open_core(new_settings(kind)), open_core(new_settings("postgres" if kind == "sqlite" else "sqlite"))
    try:
        ds, _ = small(src)
        for doc_id in ("claimed", "unqueued"):
            src.documents.upsert_async(ds, UpsertRequest(doc_id, Section(None, f"{doc_id} otters", ())), T0)
        [claimed] = src.store.claim_jobs("worker-a", 1, 60_000, T0 + 1)  # a source worker holds the first one
        assert claimed.subject == "claimed"
        # a file whose job for "unqueued" is gone: the import queues the waiting document again
        rows = [(t, r) for t, r in src.store.iter_workspace_rows(WS)
                if t != transfer_rows.COUNTS and not (t == "jobs" and r["subject"] == "unqueued")]  # fmt: skip
        assert [r["state"] for t, r in rows if t == "jobs"] == ["running"]
        ws = dst.store.import_rows(iter(rows))
        target = dst.catalog.data_source(ws, "docs")
        jobs = sorted(
            (j for j in dst.store.list_jobs(target.id) if j.state.value == "queued"), key=lambda j: str(j.subject)
        )
        assert [(j.subject, j.attempts, j.lease_owner, j.lease_until) for j in jobs] == [
            ("claimed", 1, None, 0),  # queued again, its attempt counted, the source worker's lease gone
            ("unqueued", 0, None, 0),
        ]
        waiting = dst.store.get_document(target, "unqueued", False)
        assert waiting is not None and waiting.index_state == "pending"
        assert jobs[1].payload == {"document_id": "unqueued", "hash": waiting.hash}
        assert drain(dst) == 2
        for doc_id in ("claimed", "unqueued"):
            doc = dst.store.get_document(target, doc_id, False)
            assert doc is not None and doc.index_state == "indexed" and doc.chunk_count == 1
        hits = dst.search.search(target, SearchRequest("otters", 5, SearchMode.KEYWORD))
        assert sorted(h.document.document_id for h in hits) == ["claimed", "unqueued"]
    finally:
        src.close()
        dst.close()


@pytest.mark.parametrize("kind", KINDS)
def test_import_refuses_a_workspace_that_exists(kind: str, new_settings: Callable[[str], Settings]) -> None:
    src, dst = open_core(new_settings("sqlite")), open_core(new_settings(kind))
    try:
        small(src)
        text = export_text(src)
        transfer.import_workspace(dst.store, io.StringIO(text))
        with pytest.raises(AlreadyExists) as exc:
            transfer.import_workspace(dst.store, io.StringIO(text))
        assert exc.value.code == "workspace_exists" and "'wmove' already exists" in exc.value.message
        # the same objects under another workspace sId: refused by their own unique ids, and nothing is written
        _, rows = transfer.read_export(io.StringIO(text))
        renamed = ((t, {**r, "sid": "other"} if t == "workspace" else r) for t, r in rows)
        with pytest.raises(AlreadyExists, match="already holds"):
            dst.store.import_rows(renamed)
        assert dst.store.get_workspace("other") is None
        ws = dst.catalog.workspace(WS)
        [ds] = dst.store.list_data_sources(ws.id, None)
        assert dst.store.list_documents(ds, None, 10, 0)[1] == 2
    finally:
        src.close()
        dst.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_file_imports_nothing(kind: str, new_settings: Callable[[str], Settings]) -> None:
    src, dst = open_core(new_settings("sqlite")), open_core(new_settings(kind))
    try:
        small(src)
        lines = export_text(src).splitlines(keepends=True)
        header = json.loads(lines[0])
        assert header["format"] == "alexandria-export" and header["version"] == 1 and header["workspace"] == WS
        assert json.loads(lines[-1]) == {"end": {"counts": {t: n for t, n in header["counts"].items() if n}}}
        chunk = json.loads(next(line for line in lines if '"t":"chunks"' in line))["r"]
        assert len(base64_bytes(chunk["vector"])) == 4 * 64  # base64 float32
        bad = {
            "truncated": lines[:-1],  # no end line: the rows already written are rolled back
            "a row short": lines[:3] + lines[4:],
            "not an export": ['{"hello": 1}\n', *lines[1:]],
            "a later version": [json.dumps({**header, "version": 2}) + "\n", *lines[1:]],
            "not JSON": [*lines[:-1], "{oops\n", lines[-1]],
            "a short vector": [line.replace(chunk["vector"], chunk["vector"][:8]) for line in lines],
            "an unknown table": [*lines[:2], '{"t":"secrets","r":{}}\n', *lines[2:]],
        }
        for what, content in bad.items():
            with pytest.raises(InvalidRequest):
                transfer.import_workspace(dst.store, io.StringIO("".join(content)))
            assert dst.store.get_workspace(WS) is None, what
        transfer.import_workspace(dst.store, io.StringIO("".join(lines)))  # and the good file then goes in
        assert dst.store.get_workspace(WS) is not None
    finally:
        src.close()
        dst.close()


def base64_bytes(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# --- the CLI ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "target"), [("sqlite", "postgres"), ("postgres", "sqlite")])
async def test_cli_moves_a_workspace(source: str, target: str, new_settings: Callable[[str], Settings]) -> None:
    src_settings, dst_settings = new_settings(source), new_settings(target)
    async with app(src_settings) as (src, src_client):
        secrets = await build(src, src_client)
        drain(src)
        before = await listings(src, src_client, secrets)
        src_model = model_state(src)
    out = Path(str(src_settings.data_dir) + "-export.jsonl" + (".gz" if source == "sqlite" else ""))
    runner = CliRunner()
    env: dict[str, str | None] = {"ALEXANDRIA_DATABASE_URL": None}
    src_url, dst_url = src_settings.resolved_database_url(), dst_settings.resolved_database_url()
    result = runner.invoke(main, ["export", "--database-url", src_url, "--workspace", WS, str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert out.is_file() and not Path(str(out) + ".partial").exists()
    assert (out.read_bytes()[:2] == b"\x1f\x8b") == (out.suffix == ".gz")  # gzip when the name says so
    result = runner.invoke(main, ["import", "--database-url", dst_url, str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == WS
    async with app(dst_settings) as (dst, dst_client):
        assert model_state(dst) == src_model
        assert await listings(dst, dst_client, secrets) == before
        hits = dst.search.search(dst.catalog.data_source(dst.catalog.workspace(WS), "docs"),
                                 SearchRequest("whales ocean", 3, SearchMode.HYBRID))  # fmt: skip
        assert hits and hits[0].document.title == "Whales"
    again = runner.invoke(main, ["import", "--database-url", dst_url, str(out)], env=env)
    assert again.exit_code != 0 and "already exists" in again.output
    missing = runner.invoke(main, ["export", "--database-url", src_url, "--workspace", "nope", str(out) + "2"], env=env)
    assert missing.exit_code != 0 and "no workspace 'nope'" in missing.output
    assert not Path(str(out) + "2").exists() and not Path(str(out) + "2.partial").exists()
