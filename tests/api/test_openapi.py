from __future__ import annotations

import httpx
import pytest

from alexandria.api.doors import door_of

pytestmark = [pytest.mark.anyio, pytest.mark.backends("sqlite", "postgres")]


async def test_openapi_schema_lists_the_dust_routes(client: httpx.AsyncClient) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status_code == 200
    paths = resp.json()["paths"]
    base = "/api/v1/w/{wId}/spaces/{spaceId}/data_sources/{dsId}"
    assert set(paths[f"{base}/documents/{{documentId}}"]) == {"get", "post", "delete"}
    assert "get" in paths[f"{base}/search"]
    assert "get" in paths["/api/v1/w/{wId}/spaces"]


async def test_openapi_describes_bodies_parameters_and_dialect_errors(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    paths = doc["paths"]
    operations = [(p, m, op) for p, item in paths.items() for m, op in item.items()]
    assert len(operations) > 100
    for path, method, op in operations:
        assert "422" not in op["responses"], (method, path)  # the dialects answer validation errors with 400
        envelope = {"openai": "OpenAIError", "dify": "DifyError", "dust": "DustError"}[door_of(path)]
        for status in ("400", "401", "404", "405"):
            schema = op["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{envelope}"}, (method, path, status)
        assert "Allow" in op["responses"]["405"]["headers"]
        if method in ("post", "patch", "put") and not path.endswith(("/metadata/built-in/{action}", "/cancel")):
            assert "requestBody" in op, (method, path)
    assert doc["components"]["schemas"]["DustError"]["required"] == ["error"]
    assert doc["components"]["schemas"]["DifyError"]["required"] == ["code", "message", "status"]

    base = "/api/v1/w/{wId}/spaces/{spaceId}/data_sources/{dsId}"
    upsert = paths[f"{base}/documents/{{documentId}}"]["post"]
    body = upsert["requestBody"]["content"]["application/json"]["schema"]
    assert {"text", "section", "tags", "timestamp", "source_url", "async", "light_document_output"} <= set(
        body["properties"]
    )
    assert upsert["responses"]["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    search = {p["name"]: p for p in paths[f"{base}/search"]["get"]["parameters"]}
    assert (
        search["query"]["required"] and search["top_k"]["required"] and search["tags_in"]["schema"]["type"] == "array"
    )
    csv = paths[f"{base}/tables/csv"]["post"]["requestBody"]["content"]
    assert set(csv) == {"application/json", "multipart/form-data"}

    by_file = paths["/v1/datasets/{dataset_id}/document/create_by_file"]["post"]
    form = by_file["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["file"] == {"type": "string", "format": "binary"} and "data" in form["properties"]
    assert by_file["parameters"][0]["schema"]["format"] == "uuid"
    by_text = paths["/v1/datasets/{dataset_id}/document/create-by-text"]["post"]["requestBody"]
    assert set(by_text["content"]["application/json"]["schema"]["required"]) == {"name", "text"}
    assert "WWW-Authenticate" in paths["/v1/datasets"]["get"]["responses"]["401"]["headers"]
    assert {p["name"] for p in paths["/v1/datasets"]["get"]["parameters"]} >= {"page", "limit", "keyword", "tag_ids"}
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
