from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.anyio, pytest.mark.backends("sqlite", "postgres")]


async def test_openapi_schema_lists_the_dust_routes(client: httpx.AsyncClient) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status_code == 200
    paths = resp.json()["paths"]
    base = "/api/v1/w/{wId}/spaces/{spaceId}/data_sources/{dsId}"
    assert set(paths[f"{base}/documents/{{documentId}}"]) == {"get", "post", "delete"}
    assert "get" in paths[f"{base}/search"]
    assert "get" in paths["/api/v1/w/{wId}/spaces"]
