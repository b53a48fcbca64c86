"""SQL over tables cannot starve the server (issue 11): runaway queries run on the SQL pool's own bounded threads,
never on the server's, a trivial query of the same table answers while they run, the time limit counts from arrival,
a full queue is refused at once with Dust's 429, and another workspace's search is served meanwhile.

Every test asserts an *ordering* (the answer came while the runaways were still running), never a duration. The
runaways end by themselves at their time limit (``RUNAWAY_MS``), which is what each test waits for at the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest

from alexandria.config import Settings
from alexandria.services.core import Core
from tests.api.test_dust_tables import CUSTOMERS, assert_error, auth, base, create_table, query_url, upsert_rows
from tests.conftest import Tenant

pytestmark = [pytest.mark.anyio, pytest.mark.backends("sqlite", "postgres")]

RUNAWAY_MS = 3000  # long enough that the trivial requests below answer well within it on a loaded machine
RUNAWAY = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c",
    "postgres": "SELECT pg_sleep(600) IS NULL AS n FROM customers",
}
TRIVIAL = "SELECT count(*) AS n FROM customers"


@pytest.fixture
def settings(tmp_path: Path, backend_url: str | None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=backend_url,
        sql_timeout_ms=RUNAWAY_MS,
        sql_workers=4,
        sql_workers_per_workspace=3,
        sql_queue=64,
        sql_queue_per_workspace=2,
    )


@pytest.fixture
async def few_server_threads() -> AsyncIterator[None]:
    """The server's thread pool (anyio's, which runs blocking request work) cut to 4 threads: more runaways than
    that would have held them all when SQL ran on them, and kept a search waiting for the first runaway's end."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    before = limiter.total_tokens
    limiter.total_tokens = 4
    yield
    limiter.total_tokens = before


def tables(t: Tenant) -> list[dict[str, str]]:
    return [{"data_source_id": t.ds.sid, "table_id": "t1"}]


async def sql(client: httpx.AsyncClient, t: Tenant, query: str) -> httpx.Response:
    return await client.post(query_url(t), json={"query": query, "tables": tables(t)}, headers=auth(t.key))


async def with_table(client: httpx.AsyncClient, t: Tenant) -> None:
    assert (await create_table(client, t)).status_code == 200
    assert (await upsert_rows(client, t, CUSTOMERS)).status_code == 200


async def until(predicate: Any) -> None:
    """Wait (on the event loop, so requests go on) until ``predicate()`` holds."""
    for _ in range(6000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


def timed_out(resp: httpx.Response) -> None:
    err = assert_error(resp, 400, "data_source_error")
    assert err["data_source_error"]["code"] == "query_timeout", err
    assert err["message"] == f"Query execution timed out after {RUNAWAY_MS} ms."


async def start_runaways(
    client: httpx.AsyncClient, core: Core, t: Tenant, backend: str, n: int, running: int
) -> list[asyncio.Task[httpx.Response]]:
    tasks = [asyncio.create_task(sql(client, t, RUNAWAY[backend])) for _ in range(n)]
    await until(lambda: core.tables.sql_pool.running(t.workspace.id) >= running)
    return tasks


async def test_a_trivial_query_answers_while_runaways_run_on_the_same_table(
    client: httpx.AsyncClient, core: Core, tenant: Tenant, backend: str
) -> None:
    await with_table(client, tenant)
    runaways = await start_runaways(client, core, tenant, backend, 2, running=2)
    resp = await sql(client, tenant, TRIVIAL)
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"] == [{"value": {"n": 3}}]
    assert not any(r.done() for r in runaways)  # answered before the runaways' time limit
    for r in runaways:
        timed_out(await r)
    # the cached database served them side by side: a connection each
    engine = core.store._query_engine()  # type: ignore[attr-defined]
    (key,) = engine.cached_keys()
    assert engine.cached(key).connections() == 3


async def test_the_time_limit_counts_time_spent_waiting(
    client: httpx.AsyncClient, core: Core, tenant: Tenant, backend: str
) -> None:
    await with_table(client, tenant)
    slow = core.settings.model_copy(update={"sql_timeout_ms": 4 * RUNAWAY_MS})
    core.tables.settings = slow
    runaways = await start_runaways(client, core, tenant, backend, 3, running=3)  # the workspace's 3 workers
    core.tables.settings = core.settings
    # waits for a worker for its whole time limit, and is answered then, while the runaways still run
    timed_out(await sql(client, tenant, TRIVIAL))
    assert not any(r.done() for r in runaways)
    assert core.tables.sql_pool.waiting() == 0
    for r in runaways:
        err = assert_error(await r, 400, "data_source_error")
        assert err["data_source_error"]["code"] == "query_timeout"


async def test_a_full_queue_is_refused_at_once(
    client: httpx.AsyncClient, core: Core, tenant: Tenant, other_tenant: Tenant, backend: str
) -> None:
    await with_table(client, tenant)
    await with_table(client, other_tenant)
    before = await sql(client, tenant, TRIVIAL)
    runaways = await start_runaways(client, core, tenant, backend, 5, running=3)  # 3 run, 2 wait
    await until(lambda: core.tables.sql_pool.waiting(tenant.workspace.id) == 2)
    resp = await sql(client, tenant, TRIVIAL)
    err = assert_error(resp, 429, "rate_limit_error")
    assert set(err) == {"type", "message"}
    assert err["message"].startswith("Too many SQL queries of this workspace are running or waiting (5).")
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= RUNAWAY_MS // 1000
    assert err["message"].endswith(f"Retry after {retry_after} s.")
    assert not any(r.done() for r in runaways)  # refused at once, not after waiting
    # another workspace is not refused: it has room of its own
    other = await sql(client, other_tenant, TRIVIAL)
    assert other.status_code == 200, other.text
    assert not any(r.done() for r in runaways)
    for r in runaways:
        timed_out(await r)
    # and once they are done, the workspace's queries are served again, with the same answer
    again = await sql(client, tenant, TRIVIAL)
    assert again.status_code == 200 and again.json() == before.json()


@pytest.mark.usefixtures("few_server_threads")
async def test_another_workspace_is_served_while_runaways_saturate_the_pool(
    client: httpx.AsyncClient, core: Core, tenant: Tenant, other_tenant: Tenant, backend: str
) -> None:
    await with_table(client, tenant)
    await with_table(client, other_tenant)
    doc = {"text": "Mitochondria produce most of the ATP of a cell."}
    put = await client.post(f"{base(other_tenant)}/documents/cells", json=doc, headers=auth(other_tenant.key))
    assert put.status_code == 200, put.text
    # many more runaways than the server has threads: 3 run, 2 wait, the rest are refused at once
    runaways = await start_runaways(client, core, tenant, backend, 12, running=3)
    await until(lambda: sum(r.done() for r in runaways) == 7)
    refused = [r.result() for r in runaways if r.done()]
    assert all(r.status_code == 429 for r in refused)
    accepted = [r for r in runaways if not r.done()]
    search = await client.get(
        f"{base(other_tenant)}/search", params={"query": "how do cells make energy", "top_k": 3},
        headers=auth(other_tenant.key),
    )  # fmt: skip
    assert search.status_code == 200, search.text
    assert [d["document_id"] for d in search.json()["documents"]] == ["cells"]
    other_sql = await sql(client, other_tenant, TRIVIAL)  # its SQL too: a worker is left for other workspaces
    assert other_sql.status_code == 200, other_sql.text
    assert not any(r.done() for r in accepted)  # both answered before any runaway finished
    for r in accepted:
        timed_out(await r)
