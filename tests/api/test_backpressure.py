"""Back-pressure: write requests that embed in the request are admitted up to a bound (then 429 with Retry-After in
the dialect's envelope, nothing stored), and searches are served while the document-embedding lane is saturated.

The write lane is held by a task that waits on an event, so every assertion is about order, never about time."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from alexandria.api.admission import WriteAdmission
from alexandria.api.app import create_app
from alexandria.config import Settings
from alexandria.services.core import Core
from tests.api.dify_helpers import assert_dify_error, dify  # noqa: F401  (a pytest fixture)
from tests.api.test_dify_documents import KB, drain, new_doc
from tests.api.test_dify_documents import kb as kb  # a pytest fixture
from tests.api.test_dust_documents import assert_error, auth, base, upsert
from tests.conftest import Tenant

pytestmark = [pytest.mark.anyio]

GUARD_S = 30  # only against a deadlock: the assertions are about order


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"write_concurrency": 1, "write_queue": 1})


@pytest.fixture
def admission_app(settings: Settings, core: Core) -> Any:
    return create_app(settings, core)


@pytest.fixture
async def client(admission_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=admission_app.state.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
def admission(admission_app: Any) -> WriteAdmission:
    found: WriteAdmission = admission_app.state.write_admission
    return found


def hold_lane(core: Core) -> threading.Event:
    """Make the write lane busy with a task that waits for the returned event. A watchdog sets it after
    ``GUARD_S`` so that a regression (something waiting behind the lane that should not) fails instead of hanging."""
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        holding.set()
        release.wait()

    core.embedders.write_lane.submit(hold)
    assert holding.wait(GUARD_S)
    watchdog = threading.Timer(GUARD_S, release.set)
    watchdog.daemon = True
    watchdog.start()
    return release


@pytest.fixture
def held_lane(core: Core) -> Iterator[threading.Event]:
    release = hold_lane(core)
    yield release
    release.set()


async def until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until ``condition`` holds (checked at every turn)."""
    with anyio.fail_after(GUARD_S):
        while not condition():
            await anyio.sleep(0)


def started(tg: anyio.abc.TaskGroup, call: Callable[[], Awaitable[httpx.Response]]) -> list[httpx.Response]:
    """Start ``call`` in ``tg``; its response lands in the returned list."""
    out: list[httpx.Response] = []

    async def run() -> None:
        out.append(await call())

    tg.start_soon(run)
    return out


def check_retry_after(resp: httpx.Response) -> None:
    assert resp.headers["Retry-After"].isdigit() and int(resp.headers["Retry-After"]) >= 1
    assert resp.headers["Connection"] == "close"


async def test_dust_upsert_beyond_the_admission_bound_gets_429_with_retry_after(
    client: httpx.AsyncClient, core: Core, tenant: Tenant, admission: WriteAdmission, held_lane: threading.Event
) -> None:
    async with anyio.create_task_group() as tg:
        first = started(tg, lambda: upsert(client, tenant, "d1", text="alpha beta"))
        second = started(tg, lambda: upsert(client, tenant, "d2", text="gamma delta"))
        # one embedding (its batch queued behind the held lane), one waiting for its turn
        await until(lambda: admission.admitted == 2 and core.embedders.write_lane.pending == 2)
        assert admission.running == 1
        refused = await upsert(client, tenant, "d3", text="epsilon zeta")
        assert_error(refused, 429, "rate_limit_error")
        check_retry_after(refused)
        # an async upsert embeds nothing in the request: not subject to the bound
        queued = await client.post(
            f"{base(tenant)}/documents/d4", json={"text": "eta theta", "async": True}, headers=auth(tenant.key)
        )
        assert queued.status_code == 200, queued.text
        assert not first and not second  # still held
        held_lane.set()
    assert first[0].status_code == 200 and second[0].status_code == 200, (first[0].text, second[0].text)
    assert admission.admitted == 0
    gone = await client.get(f"{base(tenant)}/documents/d3", headers=auth(tenant.key))
    err = assert_error(gone, 400, "data_source_error")  # Dust's answer for a missing document
    assert err["data_source_error"]["code"] == "data_source_document_not_found"  # the refused upsert stored nothing
    again = await upsert(client, tenant, "d3", text="epsilon zeta")  # room again
    assert again.status_code == 200, again.text


@pytest.mark.usefixtures("dify")
async def test_dify_segment_write_beyond_the_admission_bound_gets_429_in_difys_envelope(
    client: httpx.AsyncClient, core: Core, kb: KB, admission: WriteAdmission
) -> None:
    doc_id = str((await new_doc(client, kb, "notes", "Aardvarks dig burrows."))["document"]["id"])
    drain(core)
    url = f"{kb.url}/documents/{doc_id}/segments"
    release = hold_lane(core)
    try:
        async with anyio.create_task_group() as tg:
            one = started(tg, lambda: client.post(url, json={"segments": [{"content": "Badgers"}]}, headers=kb.h))
            two = started(tg, lambda: client.post(url, json={"segments": [{"content": "Camels"}]}, headers=kb.h))
            await until(lambda: admission.admitted == 2 and core.embedders.write_lane.pending == 2)
            refused = await client.post(url, json={"segments": [{"content": "Dingos"}]}, headers=kb.h)
            body = assert_dify_error(refused, 429, "too_many_requests")
            assert "retry" in body["message"]
            check_retry_after(refused)
            release.set()
    finally:
        release.set()
    assert one[0].status_code == 200 and two[0].status_code == 200, (one[0].text, two[0].text)
    listed = await client.get(url, params={"limit": 100}, headers=kb.h)
    contents = [s["content"] for s in listed.json()["data"]]
    assert "Dingos" not in contents and {"Badgers", "Camels"} <= set(contents)


@pytest.mark.parametrize("mode", ["vector", "hybrid", "keyword"])
async def test_a_search_is_served_while_the_write_lane_is_saturated(
    client: httpx.AsyncClient, core: Core, tenant: Tenant, held_lane: threading.Event, mode: str
) -> None:
    core.embedders.write_lane.submit(lambda: None)  # one more task queued behind the held one
    async with anyio.create_task_group() as tg:
        write = started(tg, lambda: upsert(client, tenant, "new", text="ocelots climb trees"))
        await until(lambda: core.embedders.write_lane.pending == 3)  # held + queued + the upsert's batch
        params = {"query": "ocelots climb", "top_k": 5, "search_mode": mode}
        found = await client.get(f"{base(tenant)}/search", params=params, headers=auth(tenant.key))
        assert found.status_code == 200, found.text
        assert found.json()["documents"] == []  # served before the write, which is still waiting for the lane
        assert not write and core.embedders.write_lane.pending == 3
        held_lane.set()
    assert write[0].status_code == 200, write[0].text
    found = await client.get(f"{base(tenant)}/search", params=params, headers=auth(tenant.key))
    assert [d["document_id"] for d in found.json()["documents"]] == ["new"]


async def test_the_openapi_document_lists_429_with_retry_after_on_every_admitted_write(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    segments = "/v1/datasets/{dataset_id}/documents/{document_id}/segments"
    admitted = [
        ("post", "/api/v1/w/{wId}/spaces/{spaceId}/data_sources/{dsId}/documents/{documentId}"),
        ("post", segments),
        ("post", segments + "/{segment_id}"),
        ("post", segments + "/{segment_id}/child_chunks"),
        ("patch", segments + "/{segment_id}/child_chunks/{child_id}"),
        ("patch", "/v1/datasets/{dataset_id}/documents/status/{action}"),
    ]
    for method, path in admitted:
        response = paths[path][method]["responses"]["429"]
        assert "Retry-After" in response["headers"], (method, path)
