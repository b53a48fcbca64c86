"""MCP end to end: a real `alexandria serve` on loopback (real MiniLM, SQLite on disk), the real `mcp` client over
Streamable HTTP and over stdio (`alexandria mcp` as a subprocess), both protocol eras (2026-07-28 stateless and the
2025-11-25 handshake), the README's Claude Desktop and Cursor snippets as written, the HTTP door's refusals, and a
document written through Dust's REST API read and found through MCP."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from alexandria.config import Settings
from alexandria.domain.models import Role
from alexandria.services.core import Core
from tests.live import live_server

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

README = Path(__file__).resolve().parents[2] / "README.md"
MODES = ("auto", "legacy")
ERAS = {"auto": "2026-07-28", "legacy": "2025-11-25"}


@dataclass
class World:
    base: str
    key: str  # builder key of workspace acme
    user_key: str  # a read-only key
    bound_key: str  # bound to `notes`
    admin_key: str
    notes: str  # data source ids
    other: str
    space: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("mcp") / "data"
    env = {**os.environ, "ALEXANDRIA_EMBEDDER_THREADS": "1"}
    core = Core(Settings(data_dir=data))
    try:
        ws, space = core.catalog.ensure_workspace("acme")
        notes = core.catalog.create_data_source(ws, "notes")
        other = core.catalog.create_data_source(ws, "other")
        secrets = {role: core.keys.create(ws, role)[1] for role in (Role.BUILDER, Role.USER, Role.ADMIN)}
        _, bound = core.keys.create(ws, Role.BUILDER, data_source_id=notes.id)
    finally:
        core.close()
    with live_server(data, env) as live:
        yield World(
            live.base, secrets[Role.BUILDER], secrets[Role.USER], bound, secrets[Role.ADMIN], notes.sid, other.sid,
            space.sid,
        )  # fmt: skip


@asynccontextmanager
async def over_http(url: str, headers: dict[str, str], mode: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers=headers, timeout=120) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,  # type: ignore[arg-type]
    ):
        assert client.protocol_version == ERAS[mode]
        yield client


def snippet(name: str) -> dict[str, Any]:
    """The README's JSON snippet marked ``<!-- mcp-snippet: NAME -->``, its one server entry."""
    found = re.search(rf"<!-- mcp-snippet: {name} -->\s*```json\n(.*?)```", README.read_text(), re.S)
    assert found, f"no {name} snippet in the README"
    servers = json.loads(found.group(1))["mcpServers"]
    assert list(servers) == ["alexandria"]
    entry: dict[str, Any] = servers["alexandria"]
    return entry


def stdio_params(world: World, key: str, *extra_args: str) -> StdioServerParameters:
    """The Claude Desktop snippet's command, args and env, with this server's URL and ``key``."""
    entry = snippet("claude-desktop")
    assert set(entry["env"]) == {"ALEXANDRIA_URL", "ALEXANDRIA_API_KEY"}
    command = shutil.which(entry["command"]) or str(Path(sys.executable).parent / entry["command"])
    args = [*entry["args"], *extra_args]
    if not Path(command).exists():  # not installed as a script: the same CLI through the interpreter
        command, args = sys.executable, ["-m", "alexandria.cli", *args]
    env = {**entry["env"], "ALEXANDRIA_URL": world.base, "ALEXANDRIA_API_KEY": key}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return StdioServerParameters(command=command, args=args, env=env)


def text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def call(client: Client, tool: str, /, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


async def wait_indexed(client: Client, kb: str, job_id: str) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        status = await call(client, "get_indexing_status", knowledge_base_id=kb, job_id=job_id)
        if status["state"] == "done":
            return
        assert status["state"] in ("queued", "running"), status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not done in time")


@pytest.mark.parametrize("mode", MODES)
async def test_http_both_eras_write_then_search(world: World, mode: str) -> None:
    async with over_http(f"{world.base}/mcp", {"Authorization": f"Bearer {world.key}"}, mode) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        assert "search_knowledge" in names and "upsert_document" in names
        doc_id = f"photosynthesis-{mode}"
        written = await call(
            client, "upsert_document", knowledge_base_id="notes", document_id=doc_id, title="Photosynthesis",
            text="Plants convert sunlight, water and carbon dioxide into glucose and oxygen.", tags=[mode],
        )  # fmt: skip
        assert written["status"] == "queued"
        await wait_indexed(client, world.notes, written["job_id"])
        found = await call(client, "search_knowledge", query="how do plants make sugar from light?", mode="semantic",
                           filters={"tags_in": [mode]})  # fmt: skip
        assert found["hits"][0]["document_id"] == doc_id and found["hits"][0]["scores"]["semantic"] > 0.3


async def test_the_cursor_snippet_over_http(world: World) -> None:
    entry = snippet("cursor")
    url = entry["url"].replace("http://127.0.0.1:8000", world.base)
    assert url == f"{world.base}/mcp"
    headers = {k: v.replace("${env:ALEXANDRIA_API_KEY}", world.key) for k, v in entry["headers"].items()}
    async with over_http(url, headers, "auto") as client:
        kbs = await call(client, "list_knowledge_bases")
        assert {k["name"] for k in kbs["knowledge_bases"]} == {"notes", "other"}


@pytest.mark.parametrize("mode", MODES)
async def test_the_claude_desktop_snippet_over_stdio(world: World, mode: str) -> None:
    async with Client(stdio_params(world, world.key), mode=mode) as client:
        assert client.protocol_version == ERAS[mode]
        names = [t.name for t in (await client.list_tools()).tools]
        assert "search_knowledge" in names and "upsert_document" not in names  # read-only by default
        refused = await client.call_tool("delete_document", {"knowledge_base_id": "notes", "document_id": "x"})
        assert refused.is_error and "--allow-writes" in text(refused)
        kbs = await call(client, "list_knowledge_bases")
        assert {k["id"] for k in kbs["knowledge_bases"]} == {world.notes, world.other}
        resources = (await client.list_resources()).resources
        assert {str(r.uri) for r in resources} == {f"alexandria://kb/{world.notes}", f"alexandria://kb/{world.other}"}
    async with Client(stdio_params(world, world.key, "--allow-writes"), mode=mode) as client:
        written = await call(client, "upsert_document", knowledge_base_id="other", text=f"stdio writes ({mode})")
        await wait_indexed(client, world.other, written["job_id"])
        read = await call(client, "read_document", knowledge_base_id="other", document_id=written["document_id"])
        assert read["text"] == f"stdio writes ({mode})"


def test_stdio_writes_only_protocol_messages_and_exits_when_stdin_closes(world: World) -> None:
    params = stdio_params(world, world.key)
    proc = subprocess.Popen(
        [params.command, *params.args], env={**os.environ, **(params.env or {})},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
         "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "search_knowledge",
         "arguments": {"query": "glucose"}}},
    ]  # fmt: skip
    killer = threading.Timer(120, proc.kill)  # a hung server fails the test instead of hanging it
    killer.start()
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("".join(json.dumps(r) + "\n" for r in requests).encode())
        proc.stdin.flush()
        lines = [proc.stdout.readline().decode() for _ in range(2)]  # the answers to requests 1 and 2
        proc.stdin.close()  # end of input: the server exits, writing nothing more
        rest = proc.stdout.read().decode()
        assert proc.wait(timeout=60) == 0
    finally:
        killer.cancel()
        proc.kill()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    messages = [json.loads(line) for line in lines + rest.splitlines()]  # every stdout line is one JSON-RPC message
    assert all(m.get("jsonrpc") == "2.0" for m in messages) and [m.get("id") for m in messages] == [1, 2]
    assert messages[0]["result"]["protocolVersion"] == "2025-06-18"
    assert messages[1]["result"]["isError"] is False, messages[1]


async def test_http_refusals(world: World) -> None:
    mcp_url = f"{world.base}/mcp"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    with httpx.Client(timeout=60) as http:
        before = http.get(f"{world.base}/api/v1/w/acme/spaces/{world.space}/data_sources/{world.notes}/documents",
                          headers={"Authorization": f"Bearer {world.key}"}, params={"limit": 1000}).json()  # fmt: skip
        missing = http.post(mcp_url, json=body, headers=accept)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer ")
        bad = http.post(mcp_url, json=body, headers={**accept, "Authorization": "Bearer sk-nope"})
        assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]
        good = {**accept, "Authorization": f"Bearer {world.key}"}
        assert http.post(mcp_url, json=body, headers={**good, "Origin": "https://evil.example"}).status_code == 403
        assert http.post(mcp_url, json=body, headers={**good, "Host": "evil.example"}).status_code == 421
        assert http.post(mcp_url, json=body, headers={**good, "Origin": world.base}).status_code == 200
        for method in ("GET", "DELETE"):  # stateless: no stream to open, no session to end
            answer = http.request(method, mcp_url, headers=good)
            assert answer.status_code == 405 and answer.headers["allow"] == "POST"
    # the same key's scope as over REST: a bound key, a read-only key
    async with over_http(mcp_url, {"Authorization": f"Bearer {world.bound_key}"}, "auto") as client:
        outside = await client.call_tool("search_knowledge", {"query": "glucose", "knowledge_base_ids": ["other"]})
        assert outside.is_error and "bound to one knowledge base, notes" in text(outside)
        inside = await call(client, "search_knowledge", query="glucose")
        assert inside["knowledge_base_ids"] == [world.notes]
    async with over_http(mcp_url, {"Authorization": f"Bearer {world.user_key}"}, "legacy") as client:
        assert (await call(client, "list_knowledge_bases"))["knowledge_bases"]  # reads
        write = await client.call_tool("upsert_document", {"knowledge_base_id": "notes", "text": "nope"})
        assert write.is_error and "cannot write" in text(write)
        drop = await client.call_tool("delete_document", {"knowledge_base_id": "notes", "document_id": "x"})
        assert drop.is_error
    with httpx.Client(timeout=60) as http:
        after = http.get(f"{world.base}/api/v1/w/acme/spaces/{world.space}/data_sources/{world.notes}/documents",
                         headers={"Authorization": f"Bearer {world.key}"}, params={"limit": 1000}).json()  # fmt: skip
    assert after == before


async def test_a_document_upserted_through_dust_is_read_and_found_through_mcp(world: World) -> None:
    text_ = "Tectonic plates slip along faults and release energy as seismic waves.\nFault code QX-77 is rare."
    with httpx.Client(base_url=world.base, headers={"Authorization": f"Bearer {world.key}"}, timeout=60) as http:
        resp = http.post(
            f"/api/v1/w/acme/spaces/{world.space}/data_sources/{world.notes}/documents/quakes",
            json={"text": text_, "title": "Earthquakes", "source_url": "https://example.com/quakes"},
        )
        assert resp.status_code == 200, resp.text
    async with over_http(f"{world.base}/mcp", {"Authorization": f"Bearer {world.key}"}, "auto") as client:
        read = await call(client, "read_document", knowledge_base_id=world.notes, document_id="quakes")
        assert read["text"] == text_ and read["source_url"] == "https://example.com/quakes"
        found = await call(client, "search_knowledge", query="why does the ground shake", knowledge_base_ids=["notes"])
        top = found["hits"][0]
        assert (top["document_id"], top["title"], top["source_url"]) == (
            "quakes",
            "Earthquakes",
            "https://example.com/quakes",
        )
        grep = await call(client, "grep_knowledge", pattern="QX-77", knowledge_base_id="notes")
        assert [(g["document_id"], g["line"]) for g in grep["matches"]] == [("quakes", 2)]
    async with Client(stdio_params(world, world.key)) as client:
        status = await call(client, "get_indexing_status", knowledge_base_id="notes", document_id="quakes")
        assert status["state"] == "indexed"


def test_stdio_with_a_bad_key_says_so_on_stderr_and_nothing_on_stdout(world: World) -> None:
    params = stdio_params(world, "sk-not-a-key")
    done = subprocess.run(
        [params.command, *params.args], env={**os.environ, **(params.env or {})}, input=b"", capture_output=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == b""
    assert "invalid or disabled" in " ".join(done.stderr.decode().split())  # rich wraps long lines
