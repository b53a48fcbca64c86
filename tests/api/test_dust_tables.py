"""Dust tables, rows, CSV and SQL over HTTP: exact shapes, statuses and envelopes (dust-behaviour.md §2.8, §4, §6.3),
plus the deliberate differences listed in the README."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from alexandria.domain.models import Space
from alexandria.services.core import Core
from tests.conftest import Tenant

pytestmark = [pytest.mark.anyio, pytest.mark.backends("sqlite", "postgres")]

POST_TABLE_KEYS = {"name", "table_id", "description", "schema", "timestamp", "tags", "parents", "mime_type", "title"}
TABLE_KEYS = POST_TABLE_KEYS | {"parent_id"}
CUSTOMERS = [
    {"row_id": "1", "value": {"name": "John", "conversations": 129, "paying": True}},
    {"row_id": "2", "value": {"name": "Mark", "conversations": 3, "paying": False}},
    {"row_id": "3", "value": {"name": "Sally", "conversations": 456, "paying": True}},
]
CUSTOMERS_SCHEMA = [
    {"name": "name", "value_type": "text", "possible_values": ['"John"', '"Mark"', '"Sally"']},
    {"name": "conversations", "value_type": "int", "possible_values": ["129", "3", "456"]},
    {"name": "paying", "value_type": "bool", "possible_values": ["TRUE", "FALSE"]},
]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def base(t: Tenant) -> str:
    return f"/api/v1/w/{t.workspace.sid}/spaces/{t.space.sid}/data_sources/{t.ds.sid}"


def assert_error(resp: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == type_
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


async def create_table(
    client: httpx.AsyncClient, t: Tenant, table_id: str = "t1", name: str = "customers", **extra: Any
) -> httpx.Response:
    body = {"name": name, "description": "Our customers.", "title": "", "table_id": table_id, **extra}
    return await client.post(f"{base(t)}/tables", json=body, headers=auth(t.key))


async def upsert_rows(
    client: httpx.AsyncClient, t: Tenant, rows: list[dict[str, Any]], table_id: str = "t1", **extra: Any
) -> httpx.Response:
    return await client.post(f"{base(t)}/tables/{table_id}/rows", json={"rows": rows, **extra}, headers=auth(t.key))


async def all_rows(client: httpx.AsyncClient, t: Tenant, table_id: str = "t1") -> list[dict[str, Any]]:
    resp = await client.get(f"{base(t)}/tables/{table_id}/rows?limit=1000", headers=auth(t.key))
    assert resp.status_code == 200, resp.text
    return list(resp.json()["rows"])


async def table_state(client: httpx.AsyncClient, t: Tenant, table_id: str = "t1") -> tuple[Any, Any]:
    got = await client.get(f"{base(t)}/tables/{table_id}", headers=auth(t.key))
    return got.json(), await all_rows(client, t, table_id)


# --- tables ------------------------------------------------------------------------------------------------------
async def test_create_get_list_delete_table(client: httpx.AsyncClient, tenant: Tenant) -> None:
    resp = await create_table(client, tenant, tags=["a"], timestamp=1700000000000)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "table": {
            "name": "customers",
            "table_id": "t1",
            "description": "Our customers.",
            "schema": None,
            "timestamp": 1700000000000,
            "tags": ["a"],
            "parents": ["t1"],
            "mime_type": "application/vnd.dust.table",
            "title": "customers",
        }
    }
    got = await client.get(f"{base(tenant)}/tables/t1", headers=auth(tenant.key))
    assert got.status_code == 200
    assert got.json() == {"table": {**resp.json()["table"], "parent_id": None}}
    listed = await client.get(f"{base(tenant)}/tables", headers=auth(tenant.key))
    assert listed.status_code == 200 and listed.json() == {"tables": [got.json()["table"]]}
    # the legacy route (global space) with the data source's name
    legacy = await client.get(f"/api/v1/w/{tenant.workspace.sid}/data_sources/docs/tables/t1", headers=auth(tenant.key))
    assert legacy.json() == got.json()

    deleted = await client.delete(f"{base(tenant)}/tables/t1", headers=auth(tenant.key))
    assert deleted.status_code == 200 and deleted.content == b""
    again = await client.delete(f"{base(tenant)}/tables/t1", headers=auth(tenant.key))
    assert again.status_code == 200 and again.content == b""  # idempotent
    missing = await client.get(f"{base(tenant)}/tables/t1", headers=auth(tenant.key))
    assert assert_error(missing, 404, "table_not_found")["message"] == "Failed to get table."
    assert (await client.get(f"{base(tenant)}/tables", headers=auth(tenant.key))).json() == {"tables": []}


async def test_delete_table_removes_its_rows(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await create_table(client, tenant)
    await upsert_rows(client, tenant, CUSTOMERS)
    await client.delete(f"{base(tenant)}/tables/t1", headers=auth(tenant.key))
    await create_table(client, tenant)
    assert await all_rows(client, tenant) == []
    assert (await client.get(f"{base(tenant)}/tables/t1", headers=auth(tenant.key))).json()["table"]["schema"] is None


async def test_random_table_id_title_rule_and_timestamps(client: httpx.AsyncClient, tenant: Tenant) -> None:
    url = f"{base(tenant)}/tables"
    body = {"name": "  spaced  ", "description": "", "title": "   "}
    made = (await client.post(url, json=body, headers=auth(tenant.key))).json()["table"]
    assert len(made["table_id"]) == 10 and made["table_id"].isalnum()
    assert made["title"] == "spaced"  # name.trim()
    assert made["parents"] == [made["table_id"]]
    tagged = await client.post(
        url, json={**body, "name": "n2", "tags": ["x", "title: From Tag "]}, headers=auth(tenant.key)
    )
    assert tagged.json()["table"]["title"] == "From Tag"
    assert tagged.json()["table"]["tags"] == ["x", "title: From Tag "]  # no title tag is added to tables
    explicit = await client.post(url, json={**body, "name": "n3", "title": " T "}, headers=auth(tenant.key))
    assert explicit.json()["table"]["title"] == "T"
    untitled = await client.post(url, json={**body, "name": "   "}, headers=auth(tenant.key))
    assert untitled.json()["table"]["title"] == "Untitled Document"
    seconds = await client.post(url, json={**body, "name": "n4", "timestamp": 1700000000}, headers=auth(tenant.key))
    assert seconds.json()["table"]["timestamp"] == 1700000000000
    negative = await client.post(url, json={**body, "name": "n5", "timestamp": -1}, headers=auth(tenant.key))
    assert_error(negative, 400, "invalid_request_error")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"description": "", "title": ""}, None),  # name required
        ({"name": "x", "title": ""}, None),  # description required
        ({"name": "x", "description": ""}, None),  # title required
        ({"name": 1, "description": "", "title": ""}, None),
        ({"name": "x", "description": "", "title": "", "tags": "a"}, None),
        ({"name": "x", "description": "", "title": "", "timestamp": "1"}, None),
        (
            {"name": "x", "description": "", "title": "", "mime_type": "text/csv"},
            "Invalid request body: mimeType must not be provided.",
        ),
        (
            {"name": "x", "description": "", "title": "", "parents": ["x"]},
            "Setting a custom hierarchy is not supported yet. Please omit the parents field.",
        ),
        (
            {"name": "x", "description": "", "title": "", "parent_id": "p"},
            "Setting a custom hierarchy is not supported yet. Please omit the parent_id field.",
        ),
    ],
)
async def test_table_body_validation(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], message: str | None
) -> None:
    resp = await client.post(f"{base(tenant)}/tables", json=body, headers=auth(tenant.key))
    err = assert_error(resp, 400, "invalid_request_error")
    if message is not None:
        assert err["message"] == message
    assert (await client.get(f"{base(tenant)}/tables", headers=auth(tenant.key))).json() == {"tables": []}


async def test_system_key_rules_and_parents(client: httpx.AsyncClient, tenant: Tenant) -> None:
    url = f"{base(tenant)}/tables"
    sys = auth(tenant.system_key)
    body: dict[str, Any] = {"name": "s", "description": "", "title": "Sys", "table_id": "s1"}
    no_mime = await client.post(url, json=body, headers=sys)
    assert assert_error(no_mime, 400, "invalid_request_error")["message"] == (
        "Invalid request body: mimeType must be provided."
    )
    no_title = await client.post(url, json={**body, "title": "", "mime_type": "text/csv"}, headers=sys)
    assert assert_error(no_title, 400, "invalid_request_error")["message"] == (
        "Invalid request body: title must be provided."
    )
    for parents, parent_id in ((["other"], None), ([], None), (["s1", "p"], "q"), (["s1"], "p")):
        bad = await client.post(
            url, json={**body, "mime_type": "text/csv", "parents": parents, "parent_id": parent_id}, headers=sys
        )
        assert_error(bad, 400, "invalid_request_error")
    ok = await client.post(
        url, json={**body, "mime_type": "text/csv", "parents": ["s1", "folder", "root"], "parent_id": "folder"},
        headers=sys,
    )  # fmt: skip
    assert ok.status_code == 200, ok.text
    assert set(ok.json()["table"]) == POST_TABLE_KEYS
    assert ok.json()["table"]["mime_type"] == "text/csv"
    got = (await client.get(f"{url}/s1", headers=sys)).json()["table"]
    assert got["parents"] == ["s1", "folder", "root"] and got["parent_id"] == "folder"


async def test_update_table_parents(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await create_table(client, tenant)
    url = f"{base(tenant)}/tables/t1/parents"
    resp = await client.post(url, json={"parents": ["t1", "p1", "p0"], "parent_id": "p1"}, headers=auth(tenant.key))
    assert resp.status_code == 200 and resp.json() == {"updated": True}
    got = (await client.get(f"{base(tenant)}/tables/t1", headers=auth(tenant.key))).json()["table"]
    assert got["parents"] == ["t1", "p1", "p0"] and got["parent_id"] == "p1"
    for body in ({"parents": []}, {"parents": ["x"]}, {"parents": ["t1", "a"], "parent_id": "b"}, {}):
        assert_error(await client.post(url, json=body, headers=auth(tenant.key)), 400, "invalid_request_error")
    missing = await client.post(
        f"{base(tenant)}/tables/nope/parents", json={"parents": ["nope"]}, headers=auth(tenant.key)
    )
    assert_error(missing, 404, "table_not_found")


async def test_table_names_are_unique_per_data_source(client: httpx.AsyncClient, tenant: Tenant, core: Core) -> None:
    assert (await create_table(client, tenant, "t1", "customers")).status_code == 200
    await upsert_rows(client, tenant, CUSTOMERS)
    before = await table_state(client, tenant)
    clash = await create_table(client, tenant, "t2", "customers")
    err = assert_error(clash, 400, "invalid_request_error")
    assert err["message"] == "Failed to upsert table (table names must be unique)."
    assert err["data_source_error"]["code"] == "table_name_not_unique"
    assert (await client.get(f"{base(tenant)}/tables/t2", headers=auth(tenant.key))).status_code == 404
    assert await table_state(client, tenant) == before
    # the same table_id may keep or change its name; metadata changes keep rows and schema
    renamed = await create_table(client, tenant, "t1", "clients", description="new")
    assert renamed.status_code == 200
    assert renamed.json()["table"]["description"] == "new" and renamed.json()["table"]["schema"] == CUSTOMERS_SCHEMA
    assert len(await all_rows(client, tenant)) == 3
    # another data source may use the name
    other = core.catalog.create_data_source(tenant.workspace, "second", embedder="fake")
    url = f"/api/v1/w/{tenant.workspace.sid}/spaces/{tenant.space.sid}/data_sources/{other.sid}/tables"
    body = {"name": "clients", "description": "", "title": "", "table_id": "t2"}
    assert (await client.post(url, json=body, headers=auth(tenant.key))).status_code == 200


# --- rows --------------------------------------------------------------------------------------------------------
async def test_rows_upsert_list_get_delete(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await create_table(client, tenant)
    resp = await upsert_rows(client, tenant, CUSTOMERS)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "table": {"name": "customers", "table_id": "t1", "description": "Our customers.", "schema": CUSTOMERS_SCHEMA}
    }
    listed = await client.get(f"{base(tenant)}/tables/t1/rows", headers=auth(tenant.key))
    assert listed.status_code == 200
    assert listed.json() == {"rows": CUSTOMERS, "offset": 0, "limit": 10, "total": 3}
    page = await client.get(f"{base(tenant)}/tables/t1/rows?limit=1&offset=1", headers=auth(tenant.key))
    assert page.json() == {"rows": [CUSTOMERS[1]], "offset": 1, "limit": 1, "total": 3}
    bad = await client.get(f"{base(tenant)}/tables/t1/rows?limit=x", headers=auth(tenant.key))
    assert_error(bad, 400, "invalid_request_error")

    got = await client.get(f"{base(tenant)}/tables/t1/rows/2", headers=auth(tenant.key))
    assert got.status_code == 200 and got.json() == {"row": CUSTOMERS[1]}
    deleted = await client.delete(f"{base(tenant)}/tables/t1/rows/2", headers=auth(tenant.key))
    assert deleted.status_code == 200 and deleted.json() == {"success": True}
    again = await client.delete(f"{base(tenant)}/tables/t1/rows/2", headers=auth(tenant.key))
    assert again.status_code == 200 and again.json() == {"success": True}  # idempotent
    missing = await client.get(f"{base(tenant)}/tables/t1/rows/2", headers=auth(tenant.key))
    err = assert_error(missing, 404, "invalid_request_error")
    assert err["data_source_error"]["code"] == "table_row_not_found"
    assert [r["row_id"] for r in await all_rows(client, tenant)] == ["1", "3"]
    # the deletion shows in the schema
    schema = (await client.get(f"{base(tenant)}/tables/t1", headers=auth(tenant.key))).json()["table"]["schema"]
    assert schema[0]["possible_values"] == ['"John"', '"Sally"']


async def test_row_ids_with_slashes_and_datetimes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await create_table(client, tenant)
    when = {"type": "datetime", "epoch": 1700000000123, "string_value": "2023-11-14T22:13:20.123Z"}
    await upsert_rows(
        client, tenant, [{"row_id": "a/b", "value": {"when": when, "plain": {"type": "datetime", "epoch": 0}}}]
    )
    got = await client.get(f"{base(tenant)}/tables/t1/rows/a%2Fb", headers=auth(tenant.key))
    assert got.json() == {"row": {"row_id": "a/b", "value": {"when": when, "plain": {"type": "datetime", "epoch": 0}}}}
    schema = (await client.get(f"{base(tenant)}/tables/t1", headers=auth(tenant.key))).json()["table"]["schema"]
    assert schema == [
        {"name": "when", "value_type": "datetime", "possible_values": ["2023-11-14 22:13:20"]},
        {"name": "plain", "value_type": "datetime", "possible_values": ["1970-01-01 00:00:00"]},
    ]


async def test_upsert_semantics_and_truncate(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await create_table(client, tenant)
    await upsert_rows(client, tenant, [{"row_id": "1", "value": {"v": 1}}, {"row_id": "2", "value": {"v": 2}}])
    widened = await upsert_rows(client, tenant, [{"row_id": "2", "value": {"v": "two"}}])
    assert widened.json()["table"]["schema"] == [{"name": "v", "value_type": "text", "possible_values": ["1", '"two"']}]
    # replacing the text value makes the column int again: the schema is recomputed from all rows
    narrowed = await upsert_rows(client, tenant, [{"row_id": "2", "value": {"v": 3}}])
    assert narrowed.json()["table"]["schema"] == [{"name": "v", "value_type": "int", "possible_values": ["1", "3"]}]
    assert await all_rows(client, tenant) == [{"row_id": "1", "value": {"v": 1}}, {"row_id": "2", "value": {"v": 3}}]
    appended = await upsert_rows(client, tenant, [{"row_id": "3", "value": {"w": 1.5, "v": None}}])
    assert appended.json()["table"]["schema"] == [
        {"name": "v", "value_type": "int", "possible_values": ["1", "3"]},
        {"name": "w", "value_type": "float", "possible_values": ["1.5"]},
    ]
    truncated = await upsert_rows(client, tenant, [{"row_id": "x", "value": {"z": True}}], truncate=True)
    assert truncated.json()["table"]["schema"] == [{"name": "z", "value_type": "bool", "possible_values": ["TRUE"]}]
    assert await all_rows(client, tenant) == [{"row_id": "x", "value": {"z": True}}]
    emptied = await upsert_rows(client, tenant, [], truncate=True)
    assert emptied.json()["table"]["schema"] == [] and await all_rows(client, tenant) == []
    # duplicates in one request: the last value wins
    await upsert_rows(client, tenant, [{"row_id": "d", "value": {"n": 1}}, {"row_id": "d", "value": {"n": 2}}])
    assert await all_rows(client, tenant) == [{"row_id": "d", "value": {"n": 2}}]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"rows": [{"row_id": "9", "value": {"Name": "x"}}]},
            "Invalid request body: keys must be lowercase alphanumeric.",
        ),
        (
            {"rows": [{"row_id": "9", "value": {"bad key": "x"}}]},
            "Invalid request body: keys must be lowercase alphanumeric.",
        ),
        ({"rows": [{"row_id": "9", "value": {"a": [1]}}]}, None),
        ({"rows": [{"row_id": "9", "value": {"a": {"b": 1}}}]}, None),
        ({"rows": [{"row_id": "9", "value": {"a": {"type": "datetime", "epoch": "x"}}}]}, None),
        ({"rows": [{"row_id": 9, "value": {"a": 1}}]}, None),
        ({"rows": [{"value": {"a": 1}}]}, None),
        ({"rows": {"row_id": "9"}}, None),
        ({}, None),
        ({"rows": [], "truncate": "yes"}, None),
    ],
)
async def test_invalid_rows_change_nothing(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], message: str | None
) -> None:
    await create_table(client, tenant)
    await upsert_rows(client, tenant, CUSTOMERS)
    before = await table_state(client, tenant)
    # the bad row comes after a good one: nothing of the request may be written
    if isinstance(body.get("rows"), list):
        body = {"truncate": True, **body, "rows": [{"row_id": "8", "value": {"name": "Good"}}, *body["rows"]]}
    resp = await client.post(f"{base(tenant)}/tables/t1/rows", json=body, headers=auth(tenant.key))
    err = assert_error(resp, 400, "invalid_request_error")
    if message is not None:
        assert err["message"] == message
    assert await table_state(client, tenant) == before


async def test_missing_table_on_row_routes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    url = f"{base(tenant)}/tables/nope/rows"
    assert_error(await client.post(url, json={"rows": CUSTOMERS}, headers=auth(tenant.key)), 404, "table_not_found")
    assert_error(await client.get(url, headers=auth(tenant.key)), 404, "table_not_found")
    assert_error(await client.get(f"{url}/1", headers=auth(tenant.key)), 404, "table_not_found")
    assert_error(await client.delete(f"{url}/1", headers=auth(tenant.key)), 404, "table_not_found")
    # nothing was created on the way
    assert (await client.get(f"{base(tenant)}/tables", headers=auth(tenant.key))).json() == {"tables": []}


async def test_methods_not_supported(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await create_table(client, tenant)
    resp = await client.put(f"{base(tenant)}/tables/t1", headers=auth(tenant.key))
    assert_error(resp, 405, "method_not_supported_error")


# --- CSV ---------------------------------------------------------------------------------------------------------
CSV = "Name,Conversations,Paying,Signed Up\nJohn,129,true,2024-01-02T03:04:05Z\nMark,3,false,\nSally,456,t,\n"


async def test_csv_json_upload(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = {"name": "customers", "description": "From CSV", "tableId": "c1", "csv": CSV, "tags": ["csv"]}
    resp = await client.post(f"{base(tenant)}/tables/csv", json=body, headers=auth(tenant.key))
    assert resp.status_code == 200, resp.text
    table = resp.json()["table"]
    assert set(table) == TABLE_KEYS
    assert table["table_id"] == "c1" and table["title"] == "customers" and table["tags"] == ["csv"]
    assert table["mime_type"] == "application/vnd.dust.table"
    assert table["schema"] == [
        {"name": "name", "value_type": "text", "possible_values": ['"John"', '"Mark"', '"Sally"']},
        {"name": "conversations", "value_type": "int", "possible_values": ["129", "3", "456"]},
        {"name": "paying", "value_type": "bool", "possible_values": ["TRUE", "FALSE"]},
        {"name": "signed_up", "value_type": "datetime", "possible_values": ["2024-01-02 03:04:05"]},
    ]
    rows = await all_rows(client, tenant, "c1")
    assert rows[0] == {
        "row_id": "0",
        "value": {
            "name": "John",
            "conversations": 129,
            "paying": True,
            "signed_up": {"type": "datetime", "epoch": 1704164645000, "string_value": "2024-01-02T03:04:05Z"},
        },
    }
    assert rows[2]["value"]["signed_up"] is None
    # a second upload without truncate upserts by row index; with truncate it replaces everything
    again = {**body, "csv": "name\nJoe\n"}
    await client.post(f"{base(tenant)}/tables/csv", json=again, headers=auth(tenant.key))
    after = await all_rows(client, tenant, "c1")
    assert len(after) == 3 and after[0] == {"row_id": "0", "value": {"name": "Joe"}}
    assert after[1]["value"]["name"] == "Mark"
    await client.post(f"{base(tenant)}/tables/csv", json={**again, "truncate": True}, headers=auth(tenant.key))
    assert await all_rows(client, tenant, "c1") == [{"row_id": "0", "value": {"name": "Joe"}}]


async def test_csv_multipart_upload(client: httpx.AsyncClient, tenant: Tenant) -> None:
    files = {"file": ("customers.csv", (b"__dust_id;Name\r\nj1;John\r\nm1;Mark\r\n"), "text/csv")}
    data = {"name": "people", "description": "multi", "tableId": "m1", "truncate": "true", "timestamp": "1700000000"}
    resp = await client.post(f"{base(tenant)}/tables/csv", files=files, data=data, headers=auth(tenant.key))
    assert resp.status_code == 200, resp.text
    assert resp.json()["table"]["timestamp"] == 1700000000000
    assert resp.json()["table"]["schema"] == [
        {"name": "name", "value_type": "text", "possible_values": ['"John"', '"Mark"']}
    ]
    assert [r["row_id"] for r in await all_rows(client, tenant, "m1")] == ["j1", "m1"]
    no_file = await client.post(
        f"{base(tenant)}/tables/csv", files={"other": ("x", b"y")}, data=data, headers=auth(tenant.key)
    )
    assert_error(no_file, 400, "invalid_request_error")


@pytest.mark.parametrize(
    "csv",
    ["", "a,b\n1,2\n3\n", ",".join(f"c{i}" for i in range(600)) + "\n"],
)
async def test_invalid_csv_creates_nothing(client: httpx.AsyncClient, tenant: Tenant, csv: str) -> None:
    body = {"name": "bad", "description": "", "tableId": "b1", "csv": csv}
    resp = await client.post(f"{base(tenant)}/tables/csv", json=body, headers=auth(tenant.key))
    assert_error(resp, 400, "invalid_rows_request_error")
    assert (await client.get(f"{base(tenant)}/tables", headers=auth(tenant.key))).json() == {"tables": []}


async def test_invalid_csv_leaves_an_existing_table_alone(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = {"name": "customers", "description": "v1", "tableId": "c1", "csv": CSV}
    await client.post(f"{base(tenant)}/tables/csv", json=body, headers=auth(tenant.key))
    before = await table_state(client, tenant, "c1")
    bad = {**body, "description": "v2", "csv": "a,b\n1\n", "truncate": True}
    assert_error(await client.post(f"{base(tenant)}/tables/csv", json=bad, headers=auth(tenant.key)), 400,
                 "invalid_rows_request_error")  # fmt: skip
    assert await table_state(client, tenant, "c1") == before


async def test_csv_request_errors(client: httpx.AsyncClient, tenant: Tenant) -> None:
    url = f"{base(tenant)}/tables/csv"
    assert_error(await client.post(url, json={"name": "x", "description": ""}, headers=auth(tenant.key)), 400,
                 "invalid_request_error")  # fmt: skip
    assert_error(await client.post(url, json={"description": "", "csv": "a\n1"}, headers=auth(tenant.key)), 400,
                 "invalid_request_error")  # fmt: skip
    with_mime = {"name": "x", "description": "", "csv": "a\n1", "mimeType": "text/csv"}
    assert_error(await client.post(url, json=with_mime, headers=auth(tenant.key)), 400, "invalid_request_error")
    latin1 = await client.post(
        url, files={"file": ("x.csv", "café\n1\n".encode("latin-1"))}, data={"name": "x", "description": ""},
        headers=auth(tenant.key),
    )  # fmt: skip
    assert_error(latin1, 400, "invalid_rows_request_error")
    await create_table(client, tenant, "t1", "taken")
    clash = await client.post(url, json={"name": "taken", "description": "", "csv": "a\n1"}, headers=auth(tenant.key))
    assert assert_error(clash, 400, "invalid_request_error")["data_source_error"]["code"] == "table_name_not_unique"
    assert len((await client.get(f"{base(tenant)}/tables", headers=auth(tenant.key))).json()["tables"]) == 1
    system = await client.post(
        url, json={"name": "sys", "description": "", "csv": "a\n1", "mimeType": "text/csv", "tableId": "s"},
        headers=auth(tenant.system_key),
    )  # fmt: skip
    assert system.status_code == 200 and system.json()["table"]["mime_type"] == "text/csv"


# --- SQL ---------------------------------------------------------------------------------------------------------
def make_secret_space(core: Core, t: Tenant) -> Space:
    """A restricted space whose only group the tenant's keys are not in."""
    core.spaces.create_group(t.workspace, "insiders")
    return core.spaces.create_space(t.workspace, "Secret", restricted=True, groups=["insiders"])


def query_url(t: Tenant) -> str:
    return f"/api/v1/w/{t.workspace.sid}/query_tables"


async def test_query_tables(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await create_table(client, tenant)
    await upsert_rows(client, tenant, CUSTOMERS)
    sql = "SELECT paying, sum(conversations) AS total FROM customers GROUP BY paying ORDER BY paying"
    for ref in (
        {"data_source_id": tenant.ds.sid, "table_id": "t1"},
        {"data_source_id": "docs", "table_id": "t1"},
        {"data_source_id": tenant.ds.sid, "table_id": "t1", "space_id": tenant.space.sid},
    ):
        resp = await client.post(query_url(tenant), json={"query": sql, "tables": [ref]}, headers=auth(tenant.key))
        assert resp.status_code == 200, resp.text
        assert resp.json() == {
            "schema": [
                {"name": "paying", "value_type": "int", "possible_values": ["0", "1"]},
                {"name": "total", "value_type": "int", "possible_values": ["3", "585"]},
            ],
            "results": [{"value": {"paying": 0, "total": 3}}, {"value": {"paying": 1, "total": 585}}],
            "query": sql,
        }


async def test_query_errors_leave_rows_unchanged(client: httpx.AsyncClient, tenant: Tenant, core: Core) -> None:
    await create_table(client, tenant)
    await upsert_rows(client, tenant, CUSTOMERS)
    before = await table_state(client, tenant)
    tables = [{"data_source_id": tenant.ds.sid, "table_id": "t1"}]
    core.tables.settings = core.settings.model_copy(update={"sql_max_rows": 2, "sql_timeout_ms": 100})
    cases = {
        "DELETE FROM customers": "query_execution_error",
        "DROP TABLE customers": "query_execution_error",
        "SELECT 1; DELETE FROM customers": "query_execution_error",
        "ATTACH DATABASE '/tmp/evil.db' AS evil": "query_execution_error",
        "PRAGMA query_only = 0": "query_execution_error",
        "SELECT load_extension('x')": "query_execution_error",
        "SELECT * FROM customers": "too_many_result_rows",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c": "query_timeout",
        "SELECT * FROM nope": "query_execution_error",
    }
    for sql, code in cases.items():
        resp = await client.post(query_url(tenant), json={"query": sql, "tables": tables}, headers=auth(tenant.key))
        err = assert_error(resp, 400, "data_source_error")
        assert err["data_source_error"]["code"] == code, (sql, err)
        assert err["data_source_error"]["message"] == err["message"]
        assert await table_state(client, tenant) == before


async def test_query_request_errors(client: httpx.AsyncClient, tenant: Tenant, core: Core) -> None:
    url = query_url(tenant)
    await create_table(client, tenant)
    ok_ref = {"data_source_id": tenant.ds.sid, "table_id": "t1"}
    assert_error(
        await client.post(url, json={"tables": [ok_ref]}, headers=auth(tenant.key)), 400, "invalid_request_error"
    )
    assert_error(await client.post(url, json={"query": "SELECT 1", "tables": []}, headers=auth(tenant.key)), 400,
                 "invalid_request_error")  # fmt: skip
    missing = {"query": "SELECT 1", "tables": [{"data_source_id": tenant.ds.sid, "table_id": "nope"}]}
    assert_error(await client.post(url, json=missing, headers=auth(tenant.key)), 404, "table_not_found")
    no_ds = {"query": "SELECT 1", "tables": [{"data_source_id": "dts_nothere", "table_id": "t1"}]}
    assert_error(await client.post(url, json=no_ds, headers=auth(tenant.key)), 404, "data_source_not_found")
    bad_space = {"query": "SELECT 1", "tables": [{**ok_ref, "space_id": "vlt_nothere"}]}
    assert_error(await client.post(url, json=bad_space, headers=auth(tenant.key)), 404, "space_not_found")
    # a data source of a restricted space the key is not a member of
    secret_space = make_secret_space(core, tenant)
    hidden = core.catalog.create_data_source(tenant.workspace, "hidden", space=secret_space, embedder="fake")
    hidden_ref = {"query": "SELECT 1", "tables": [{"data_source_id": hidden.sid, "table_id": "t1"}]}
    assert_error(await client.post(url, json=hidden_ref, headers=auth(tenant.key)), 404, "data_source_not_found")


async def test_query_cannot_reach_another_workspace(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await create_table(client, other_tenant, "secret", "secrets")
    await upsert_rows(client, other_tenant, [{"row_id": "1", "value": {"s": "hunter2"}}], table_id="secret")
    await create_table(client, tenant)
    # their ids with our key, on our workspace: their data source does not exist here
    theirs = {
        "query": "SELECT * FROM secrets",
        "tables": [{"data_source_id": other_tenant.ds.sid, "table_id": "secret"}],
    }
    assert_error(await client.post(query_url(tenant), json=theirs, headers=auth(tenant.key)), 404,
                 "data_source_not_found")  # fmt: skip
    # our key on their workspace
    assert_error(await client.post(query_url(other_tenant), json=theirs, headers=auth(tenant.key)), 401,
                 "workspace_auth_error")  # fmt: skip
    # naming their table in SQL over our own table
    ours = {"query": "SELECT * FROM secrets", "tables": [{"data_source_id": tenant.ds.sid, "table_id": "t1"}]}
    err = assert_error(
        await client.post(query_url(tenant), json=ours, headers=auth(tenant.key)), 400, "data_source_error"
    )
    assert "no such table: secrets" in err["message"]


# --- authentication and permissions ------------------------------------------------------------------------------
def every_route(t: Tenant) -> list[tuple[str, str, dict[str, Any] | None]]:
    b = base(t)
    legacy = f"/api/v1/w/{t.workspace.sid}/data_sources/{t.ds.sid}"
    rows = {"rows": CUSTOMERS}
    table = {"name": "n", "description": "", "title": ""}
    return [
        ("GET", f"{b}/tables", None),
        ("POST", f"{b}/tables", table),
        ("GET", f"{b}/tables/t1", None),
        ("DELETE", f"{b}/tables/t1", None),
        ("POST", f"{b}/tables/t1/parents", {"parents": ["t1"]}),
        ("GET", f"{b}/tables/t1/rows", None),
        ("POST", f"{b}/tables/t1/rows", rows),
        ("GET", f"{b}/tables/t1/rows/1", None),
        ("DELETE", f"{b}/tables/t1/rows/1", None),
        ("POST", f"{b}/tables/csv", {"name": "c", "description": "", "csv": "a\n1"}),
        ("GET", f"{legacy}/tables", None),
        ("POST", f"{legacy}/tables/t1/rows", rows),
        ("POST", f"/api/v1/w/{t.workspace.sid}/query_tables", {"query": "SELECT 1", "tables": []}),
    ]


async def test_other_workspace_and_user_keys_are_refused_everywhere(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await create_table(client, tenant)
    await upsert_rows(client, tenant, CUSTOMERS)
    before = await table_state(client, tenant)
    for method, url, body in every_route(tenant):
        for key in (other_tenant.key, other_tenant.system_key, tenant.user_key):
            resp = await client.request(method, url, json=body, headers=auth(key))
            assert_error(resp, 401, "workspace_auth_error")
        assert_error(await client.request(method, url, json=body), 401, "not_authenticated")
        assert_error(
            await client.request(method, url, json=body, headers=auth("sk-nope")), 401, "invalid_api_key_error"
        )
    assert await table_state(client, tenant) == before


async def test_data_is_per_workspace(client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant) -> None:
    await create_table(client, tenant)
    await upsert_rows(client, tenant, CUSTOMERS)
    # the other workspace has the same table id in its own data source: separate data
    await create_table(client, other_tenant)
    assert await all_rows(client, other_tenant) == []
    their_view_of_ours = f"/api/v1/w/{other_tenant.workspace.sid}/data_sources/{tenant.ds.sid}/tables/t1"
    assert_error(await client.get(their_view_of_ours, headers=auth(other_tenant.key)), 404, "data_source_not_found")
    assert len(await all_rows(client, tenant)) == 3


async def test_restricted_and_system_spaces(client: httpx.AsyncClient, tenant: Tenant, core: Core) -> None:
    secret_space = make_secret_space(core, tenant)
    hidden = core.catalog.create_data_source(tenant.workspace, "hidden", space=secret_space, embedder="fake")
    url = f"/api/v1/w/{tenant.workspace.sid}/spaces/{secret_space.sid}/data_sources/{hidden.sid}/tables"
    assert_error(await client.get(url, headers=auth(tenant.key)), 404, "space_not_found")
    body = {"name": "n", "description": "", "title": "T", "table_id": "x", "mime_type": "text/csv"}
    assert (await client.post(url, json=body, headers=auth(tenant.system_key))).status_code == 200
    managed = core.catalog.create_data_source(tenant.workspace, "managed", embedder="fake", connector_provider="notion")
    legacy = f"/api/v1/w/{tenant.workspace.sid}/data_sources/{managed.sid}/tables"
    assert_error(await client.get(legacy, headers=auth(tenant.key)), 404, "data_source_not_found")
    assert (await client.post(legacy, json=body, headers=auth(tenant.system_key))).status_code == 200
