"""The MCP server's contract, with the real ``mcp`` client connected in memory (no port): the tool list (names, order,
schemas, annotations), every tool's structured result and text, and the refusals — unknown ids, forbidden scopes,
bound keys, read-only keys — as tool errors that change nothing (the read, write and resource tests on both stores).
HTTP and stdio: tests/e2e/test_mcp_live.py."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from alexandria.api.mcp.server import AlexandriaMCP
from alexandria.config import Settings
from alexandria.domain.models import Role
from alexandria.domain.tables import TableRow
from alexandria.ingest.chunkers import Section
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest
from alexandria.services.tables import TableUpsert
from tests.conftest import Tenant, make_tenant

pytestmark = pytest.mark.anyio

READ_TOOLS = [
    "list_knowledge_bases",
    "search_knowledge",
    "grep_knowledge",
    "list_documents",
    "read_document",
    "get_chunk_context",
    "list_tables",
    "query_tables",
    "get_indexing_status",
]
WRITE_TOOLS = ["upsert_document", "upload_file", "delete_document", "create_knowledge_base"]
GUIDE = "Alpha line one\nThe error code ZX-4242 means the disk is full\nGamma line three about volcanoes"


def upsert(core: Core, t: Tenant, doc_id: str, text: str, **kw: Any) -> None:
    core.documents.upsert(t.ds, UpsertRequest(doc_id, Section(None, text, ()), **kw), 1_700_000_000_000)


@pytest.fixture
def world(core: Core, tenant: Tenant) -> Tenant:
    upsert(core, tenant, "guide", GUIDE, title="Guide", tags=("ops",), source_url="https://example.com/guide")
    upsert(core, tenant, "lava", "Volcanoes erupt lava and ash", title="Lava", tags=("geo",), timestamp=1000)
    table = core.tables.upsert(tenant.ds, TableUpsert(name="cities", description="Cities"), 1)
    rows = [TableRow("1", {"name": "Paris", "pop": 2100000}), TableRow("2", {"name": "Lyon", "pop": 520000})]
    core.tables.upsert_rows(tenant.ds, table.table_id, rows, truncate=False)
    return tenant


@asynccontextmanager
async def connect(core: Core, key: str | None, **kw: Any) -> AsyncIterator[Client]:
    async with Client(AlexandriaMCP(core, lambda: key), **kw) as client:
        yield client


def text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def ok(client: Client, tool: str, /, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    assert text(result)  # the compact rendering
    return result.structured_content


async def refused(client: Client, tool: str, /, **args: Any) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result
    return text(result)


def db_dump(settings: Settings) -> list[Any]:
    with sqlite3.connect(settings.data_dir / "alexandria.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return [(t, sorted(map(repr, db.execute(f'SELECT * FROM "{t}"')))) for t in tables if "fts" not in t]


async def test_tool_list_is_deterministic_typed_and_annotated(core: Core, world: Tenant) -> None:
    async with connect(core, world.key) as client:
        assert client.protocol_version == "2026-07-28"
        tools = (await client.list_tools()).tools
        assert [t.name for t in tools] == READ_TOOLS + WRITE_TOOLS
        for tool in tools:
            assert tool.input_schema["type"] == "object"
            assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
            assert tool.description and tool.title
            assert tool.annotations is not None
            assert tool.annotations.read_only_hint is (tool.name in READ_TOOLS)
        search = next(t for t in tools if t.name == "search_knowledge")
        props = search.input_schema["properties"]
        assert props["top_k"]["maximum"] == 50 and props["mode"]["enum"] == ["hybrid", "semantic", "keyword"]
        assert {"hits", "query", "mode", "knowledge_base_ids"} <= set(search.output_schema["properties"])  # type: ignore[index]


@pytest.mark.backends("sqlite", "postgres")
async def test_read_tools(core: Core, world: Tenant) -> None:
    kb = world.ds.sid
    async with connect(core, world.key) as client:
        kbs = (await ok(client, "list_knowledge_bases"))["knowledge_bases"]
        assert [(k["id"], k["name"], k["can_write"]) for k in kbs] == [(kb, "docs", True)]

        found = await ok(client, "search_knowledge", query="volcanoes lava", top_k=5)
        top = found["hits"][0]
        assert (top["document_id"], top["title"], top["knowledge_base_id"]) == ("lava", "Lava", kb)
        assert top["position"] == {"chunk_index": 0, "chunk_count": 1}
        assert set(top["scores"]) == {"fused", "keyword", "semantic"} and top["scores"]["semantic"] is not None
        guide = await ok(client, "search_knowledge", query="disk full error", mode="keyword", knowledge_base_ids=[kb])
        assert guide["hits"][0]["source_url"] == "https://example.com/guide"
        assert guide["hits"][0]["scores"]["semantic"] is None  # keyword mode computes one signal
        # filters narrow before ranking; ISO timestamps are accepted
        only_ops = await ok(client, "search_knowledge", query="volcanoes lava", filters={"tags_in": ["ops"]})
        assert {h["document_id"] for h in only_ops["hits"]} == {"guide"}
        recent = await ok(client, "search_knowledge", query="volcanoes", filters={"timestamp_gt": "2020-01-01"})
        assert "lava" not in {h["document_id"] for h in recent["hits"]}
        linked = await client.call_tool("search_knowledge", {"query": "volcanoes lava"})
        assert any(getattr(b, "uri", "") == f"alexandria://kb/{kb}/documents/lava" for b in linked.content)

        grep = await ok(client, "grep_knowledge", pattern="zx-4242", knowledge_base_id="docs")
        assert grep["matches"] == [
            {
                "document_id": "guide",
                "title": "Guide",
                "line": 2,
                "text": "The error code ZX-4242 means the disk is full",
            }
        ]
        exact = await ok(client, "grep_knowledge", pattern="zx-4242", knowledge_base_id=kb, case_insensitive=False)
        assert exact["matches"] == []

        docs = await ok(client, "list_documents", knowledge_base_id=kb, limit=1)
        assert docs["total"] == 2 and docs["next_offset"] == 1 and docs["documents"][0]["status"] == "indexed"

        line = await ok(client, "read_document", knowledge_base_id=kb, document_id="guide", start_line=2, end_line=2)
        assert line["text"] == "The error code ZX-4242 means the disk is full\n" and line["total_lines"] == 3
        part = await ok(client, "read_document", knowledge_base_id=kb, document_id="guide", offset=6, max_chars=4)
        assert (part["text"], part["next_offset"], part["total_chars"]) == ("line", 10, len(GUIDE))

        ctx = await ok(client, "get_chunk_context", knowledge_base_id=kb, document_id="lava", chunk_index=0)
        assert ctx["chunks"] == [{"chunk_index": 0, "text": "Volcanoes erupt lava and ash"}]

        tables = (await ok(client, "list_tables", knowledge_base_id=kb))["tables"]
        assert [(t["name"], [c["name"] for c in t["columns"]]) for t in tables] == [("cities", ["name", "pop"])]
        rows = await ok(client, "query_tables", knowledge_base_id=kb, sql="SELECT name FROM cities ORDER BY pop")
        assert rows["rows"] == [{"name": "Lyon"}, {"name": "Paris"}] and not rows["truncated"]
        capped = await ok(client, "query_tables", knowledge_base_id=kb, sql="SELECT * FROM cities", max_rows=1)
        assert len(capped["rows"]) == 1 and capped["truncated"]
        assert "no such table" in (await refused(client, "query_tables", knowledge_base_id=kb, sql="SELECT * FROM x"))

        status = await ok(client, "get_indexing_status", knowledge_base_id=kb, document_id="lava")
        assert status["state"] == "indexed"


@pytest.mark.backends("sqlite", "postgres")
async def test_resources(core: Core, world: Tenant) -> None:
    kb = world.ds.sid
    async with connect(core, world.key) as client:
        listed = (await client.list_resources()).resources
        assert [str(r.uri) for r in listed] == [f"alexandria://kb/{kb}"]
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert "alexandria://kb/{kb_id}/documents/{document_id}" in templates
        doc = await client.read_resource(f"alexandria://kb/{kb}/documents/guide")
        assert getattr(doc.contents[0], "text", None) == GUIDE
        card = await client.read_resource(f"alexandria://kb/{kb}")
        assert '"can_write":true' in getattr(card.contents[0], "text", "")
        table_id = core.tables.list_all(world.ds)[0].table_id
        schema = await client.read_resource(f"alexandria://kb/{kb}/tables/{table_id}")
        assert '"name": "pop"' in getattr(schema.contents[0], "text", "")


@pytest.mark.backends("sqlite", "postgres")
async def test_write_tools_queue_jobs_and_the_handle_follows_them(core: Core, world: Tenant) -> None:
    kb = world.ds.sid
    async with connect(core, world.key) as client:
        queued = await ok(client, "upsert_document", knowledge_base_id=kb, text="Quartz is a hard mineral", title="Q")
        assert queued["status"] == "queued" and queued["job_id"]
        doc_id = queued["document_id"]
        status = await ok(client, "get_indexing_status", knowledge_base_id=kb, job_id=queued["job_id"])
        assert status["state"] == "queued" and status["queued_jobs"] == 1
        assert core.jobs.pool(0).drain() >= 1
        status = await ok(client, "get_indexing_status", knowledge_base_id=kb, job_id=queued["job_id"])
        assert status["state"] == "done"
        hits = await ok(client, "search_knowledge", query="quartz mineral", mode="keyword")
        assert hits["hits"][0]["document_id"] == doc_id
        again = await ok(client, "upsert_document", knowledge_base_id=kb, text="Quartz is soft", document_id=doc_id)
        assert again["document_id"] == doc_id and again["job_id"] != queued["job_id"]
        core.jobs.pool(0).drain()
        assert (await ok(client, "read_document", knowledge_base_id=kb, document_id=doc_id))["text"] == "Quartz is soft"

        data = base64.b64encode(b"# Notes\nBasalt is a volcanic rock.").decode()
        up = await ok(client, "upload_file", knowledge_base_id=kb, filename="notes.md", content_base64=data)
        core.jobs.pool(0).drain()
        read = await ok(client, "read_document", knowledge_base_id=kb, document_id=up["document_id"])
        assert read["text"] == "# Notes\nBasalt is a volcanic rock." and read["title"] == "notes.md"
        assert "Cannot read" in await refused(
            client, "upload_file", knowledge_base_id=kb, filename="x.exe", content_base64=data
        )
        assert "base64" in await refused(client, "upload_file", knowledge_base_id=kb, filename="a.txt",
                                         content_base64="***")  # fmt: skip

        gone = await ok(client, "delete_document", knowledge_base_id=kb, document_id="lava")
        assert gone["status"] == "deleted" and core.documents.get(world.ds, "lava") is None
        wrong_job = await refused(client, "get_indexing_status", knowledge_base_id=kb, job_id="999")
        assert "Unknown job `999`" in wrong_job


async def test_create_knowledge_base_needs_an_admin_key(core: Core, world: Tenant, settings: Settings) -> None:
    _, admin = core.keys.create(world.workspace, Role.ADMIN)
    before = db_dump(settings)
    async with connect(core, world.key) as client:
        assert "admin key" in await refused(client, "create_knowledge_base", name="new kb")
    assert db_dump(settings) == before
    async with connect(core, admin) as client:
        card = await ok(client, "create_knowledge_base", name="new kb", description="fresh")
        assert card["name"] == "new kb" and card["space"] == "Company Data"
        names = [k["name"] for k in (await ok(client, "list_knowledge_bases"))["knowledge_bases"]]
        assert names == ["docs", "new kb"]
        assert "already" in (await refused(client, "create_knowledge_base", name="new kb"))


async def test_refusals_are_tool_errors_that_name_what_the_key_can_reach(
    core: Core, world: Tenant, settings: Settings
) -> None:
    other = make_tenant(core, "w2", "secrets")
    upsert(core, other, "secret", "Volcanoes of the other workspace")
    before = db_dump(settings)
    async with connect(core, world.key) as client:
        # an unknown id: a near-miss suggestion, never a widened search
        message = await refused(client, "search_knowledge", query="lava", knowledge_base_ids=["doc"])
        assert "Unknown knowledge base `doc`" in message and "Did you mean: docs" in message
        # another workspace's knowledge base, by id or name: as unknown
        for ref in (other.ds.sid, "secrets"):
            message = await refused(client, "read_document", knowledge_base_id=ref, document_id="secret")
            assert "Unknown knowledge base" in message and other.ds.sid not in message.split("`")[-1]
        assert "less than or equal to 50" in await refused(client, "search_knowledge", query="x", top_k=99)
        assert "empty" in await refused(client, "search_knowledge", query="x", knowledge_base_ids=[])
        assert "No document found" in await refused(client, "read_document", knowledge_base_id="docs",
                                                    document_id="nope")  # fmt: skip
        assert "there is no chunk 5" in await refused(client, "get_chunk_context", knowledge_base_id="docs",
                                                      document_id="lava", chunk_index=5)  # fmt: skip
        assert "ISO 8601" in await refused(client, "search_knowledge", query="x",
                                           filters={"timestamp_gt": "yesterday"})  # fmt: skip
    async with connect(core, "sk-not-a-key") as client:
        assert "invalid or disabled" in await refused(client, "list_knowledge_bases")
    assert db_dump(settings) == before


async def test_a_bound_key_reaches_its_knowledge_base_only(core: Core, world: Tenant, settings: Settings) -> None:
    other = core.catalog.create_data_source(world.workspace, "other", embedder="fake")
    core.documents.upsert(other, UpsertRequest("o", Section(None, "Volcanoes elsewhere", ())), 1)
    _, bound = core.keys.create(world.workspace, Role.BUILDER, data_source_id=world.ds.id)
    before = db_dump(settings)
    async with connect(core, bound) as client:
        kbs = (await ok(client, "list_knowledge_bases"))["knowledge_bases"]
        assert [k["id"] for k in kbs] == [world.ds.sid]
        everywhere = await ok(client, "search_knowledge", query="volcanoes")  # the default scope: its own KB only
        assert everywhere["knowledge_base_ids"] == [world.ds.sid]
        assert {h["knowledge_base_id"] for h in everywhere["hits"]} == {world.ds.sid}
        message = await refused(client, "search_knowledge", query="volcanoes", knowledge_base_ids=[other.sid])
        assert f"bound to one knowledge base, docs ({world.ds.sid})" in message
        for name, args in (
            ("read_document", {"document_id": "o"}),
            ("grep_knowledge", {"pattern": "Volcanoes"}),
            ("list_tables", {}),
            ("upsert_document", {"text": "intruder"}),
            ("delete_document", {"document_id": "o"}),
        ):
            assert "bound to one knowledge base" in await refused(client, name, knowledge_base_id=other.sid, **args)
        assert "admin key" in await refused(client, "create_knowledge_base", name="mine")
        resources = (await client.list_resources()).resources
        assert [str(r.uri) for r in resources] == [f"alexandria://kb/{world.ds.sid}"]
        with pytest.raises(Exception, match="bound to one knowledge base"):
            await client.read_resource(f"alexandria://kb/{other.sid}/documents/o")
    assert db_dump(settings) == before


async def test_restricted_spaces_and_read_only_keys(core: Core, world: Tenant, settings: Settings) -> None:
    group = core.spaces.create_group(world.workspace, "finance")
    space = core.spaces.create_space(world.workspace, "Finance", restricted=True, groups=[group.sid])
    hidden = core.catalog.create_data_source(world.workspace, "ledger", space=space, embedder="fake")
    core.documents.upsert(hidden, UpsertRequest("l", Section(None, "Volcano insurance ledger", ())), 1)
    _, member = core.keys.create(world.workspace, Role.BUILDER)
    core.spaces.add_key(world.workspace, group.sid, core.keys.authenticate(member))
    upsert(core, world, "lava", "Volcanoes erupt lava and ash")
    before = db_dump(settings)
    async with connect(core, world.key) as client:
        kbs = {k["name"] for k in (await ok(client, "list_knowledge_bases"))["knowledge_bases"]}
        assert kbs == {"docs"}
        assert "Unknown knowledge base `ledger`" in await refused(
            client, "search_knowledge", query="volcano", knowledge_base_ids=["ledger"]
        )
        default = await ok(client, "search_knowledge", query="volcano insurance ledger")
        assert default["knowledge_base_ids"] == [world.ds.sid]
        assert all(h["knowledge_base_id"] != hidden.sid for h in default["hits"])
    async with connect(core, member) as client:
        found = await ok(client, "search_knowledge", query="volcano insurance", knowledge_base_ids=["ledger"])
        assert [h["document_id"] for h in found["hits"]] == ["l"]
    # a `user` key is a read-only key: it reads the open spaces, and every write tool refuses
    async with connect(core, world.user_key) as client:
        cards = (await ok(client, "list_knowledge_bases"))["knowledge_bases"]
        assert [(c["name"], c["can_write"]) for c in cards] == [("docs", False)]
        found = await ok(client, "search_knowledge", query="volcanoes lava")
        assert found["hits"][0]["document_id"] == "lava"
        for tool, args in (
            ("upsert_document", {"text": "x"}),
            ("upload_file", {"filename": "a.txt", "content_base64": base64.b64encode(b"x").decode()}),
            ("delete_document", {"document_id": "lava"}),
        ):
            message = await refused(client, tool, knowledge_base_id=world.ds.sid, **args)
            assert "cannot write into knowledge base" in message and "read-only" in message
        assert "admin key" in await refused(client, "create_knowledge_base", name="mine")
    assert db_dump(settings) == before


@pytest.mark.parametrize(
    ("host", "origin", "configured", "status"),
    [
        ("127.0.0.1:8000", "http://localhost:3000", False, None),
        ("kb.example.com", None, False, 421),
        ("kb.example.com", None, True, None),
        ("kb.example.com", "https://evil.example", True, 403),
        ("kb.example.com", "https://kb.example.com", True, None),
    ],
)
async def test_host_and_origin_checks_follow_the_settings(
    tmp_path: Any, host: str, origin: str | None, configured: bool, status: int | None
) -> None:
    from mcp.server.transport_security import TransportSecurityMiddleware
    from starlette.requests import Request

    from alexandria.api.mcp.http import transport_security

    extra: dict[str, Any] = (
        {"mcp_allowed_hosts": ["kb.example.com"], "mcp_allowed_origins": ["https://kb.example.com"]}
        if configured
        else {}
    )
    checks = TransportSecurityMiddleware(transport_security(Settings(data_dir=tmp_path, **extra)))
    headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
    answer = await checks.validate_request(Request({"type": "http", "method": "POST", "headers": headers}))
    assert (answer.status_code if answer is not None else None) == status
