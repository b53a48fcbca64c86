"""Tables end to end: a real `alexandria serve` process over HTTP on loopback, on each backend (SQLite on disk, and an
embedded PostgreSQL through ``ALEXANDRIA_DATABASE_URL``). Create a table, upsert rows, upload a CSV, run an SQL
aggregate over both, delete."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.conftest import BACKENDS
from tests.live import live_server, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=BACKENDS)
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    backend = str(request.param)
    if backend not in str(request.config.getoption("backends")).split(","):
        pytest.skip(f"backend {backend} not selected (--backends)")
    data = tmp_path_factory.mktemp("e2e_tables") / "data"
    env = {**os.environ, "ALEXANDRIA_EMBEDDER_THREADS": "1"}
    env.pop("ALEXANDRIA_DATABASE_URL", None)
    if backend == "postgres":
        env["ALEXANDRIA_DATABASE_URL"] = request.getfixturevalue("pg_server").create_database("e2e_tables")
    key = run_cli("keys", "create", "--data-dir", str(data), "--workspace", "acme", env=env)
    ds = run_cli("datasources", "create", "--data-dir", str(data), "--workspace", "acme", "sheets", env=env)
    if backend == "postgres":  # the CLI and the server really use the database
        with psycopg.connect(env["ALEXANDRIA_DATABASE_URL"]) as conn:
            assert conn.execute("SELECT count(*) FROM data_sources WHERE sid = %s", (ds,)).fetchone() == (1,)
    with live_server(data, env) as live:
        yield live.base, key, ds


def test_tables_rows_csv_sql_delete_over_http(server: tuple[str, str, str]) -> None:
    base, key, ds = server
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        space = http.get("/api/v1/w/acme/spaces").json()["spaces"][0]["sId"]
        root = f"/api/v1/w/acme/spaces/{space}/data_sources/{ds}"
        made = http.post(
            f"{root}/tables", json={"name": "orders", "description": "Orders", "title": "", "table_id": "o"}
        )
        assert made.status_code == 200, made.text
        rows = [
            {"row_id": str(i), "value": {"region": ["emea", "amer"][i % 2], "amount": i * 10, "paid": i % 3 == 0}}
            for i in range(1, 101)
        ]
        upserted = http.post(f"{root}/tables/o/rows", json={"rows": rows})
        assert upserted.status_code == 200, upserted.text
        assert [c["value_type"] for c in upserted.json()["table"]["schema"]] == ["text", "int", "bool"]
        listed = http.get(f"{root}/tables/o/rows", params={"limit": 5, "offset": 95}).json()
        assert listed["total"] == 100 and [r["row_id"] for r in listed["rows"]] == ["96", "97", "98", "99", "100"]

        csv = "Region,Target\nemea,300\namer,400\n"
        uploaded = http.post(
            f"{root}/tables/csv",
            files={"file": ("targets.csv", csv.encode(), "text/csv")},
            data={"name": "targets", "description": "Targets", "tableId": "t", "truncate": "true"},
        )
        assert uploaded.status_code == 200, uploaded.text
        assert [c["name"] for c in uploaded.json()["table"]["schema"]] == ["region", "target"]

        sql = (  # portable: the same rows on SQLite and PostgreSQL (booleans come back as 1/0 on both)
            "SELECT o.region, sum(o.amount) AS total, t.target, sum(o.amount) >= t.target AS met FROM orders o "
            "JOIN targets t ON t.region = o.region GROUP BY o.region, t.target ORDER BY o.region"
        )
        tables = [{"data_source_id": ds, "table_id": "o"}, {"data_source_id": ds, "table_id": "t"}]
        result = http.post("/api/v1/w/acme/query_tables", json={"query": sql, "tables": tables})
        assert result.status_code == 200, result.text
        assert result.json()["results"] == [
            {"value": {"region": "amer", "total": 25000, "target": 400, "met": 1}},
            {"value": {"region": "emea", "total": 25500, "target": 300, "met": 1}},
        ]
        assert [c["name"] for c in result.json()["schema"]] == ["region", "total", "target", "met"]
        refused = http.post("/api/v1/w/acme/query_tables", json={"query": "DELETE FROM orders", "tables": tables})
        assert refused.status_code == 400 and refused.json()["error"]["type"] == "data_source_error"

        assert http.delete(f"{root}/tables/o").status_code == 200
        assert http.get(f"{root}/tables/o").status_code == 404
        gone = http.post("/api/v1/w/acme/query_tables", json={"query": "SELECT 1", "tables": tables})
        assert gone.status_code == 404 and gone.json()["error"]["type"] == "table_not_found"
        assert [t["table_id"] for t in http.get(f"{root}/tables").json()["tables"]] == ["t"]
