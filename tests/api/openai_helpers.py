"""Helpers of the OpenAI door's in-process tests: uploads, stores, attaching and indexing (the queue drained in the
test's thread), the exact error body."""

from __future__ import annotations

from typing import Any

import httpx

from alexandria.services.core import Core

ERROR_KEYS = {"message", "type", "param", "code"}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def upload(client: httpx.AsyncClient, key: str, name: str, data: bytes, purpose: str = "assistants") -> str:
    resp = await client.post("/v1/files", files={"file": (name, data)}, data={"purpose": purpose}, headers=auth(key))
    assert resp.status_code == 200, resp.text
    file_id: str = resp.json()["id"]
    return file_id


async def create_store(client: httpx.AsyncClient, key: str, name: str = "notes", **body: Any) -> dict[str, Any]:
    resp = await client.post("/v1/vector_stores", json={"name": name, **body}, headers=auth(key))
    assert resp.status_code == 200, resp.text
    store: dict[str, Any] = resp.json()
    return store


async def attach(
    client: httpx.AsyncClient, core: Core, key: str, store_id: str, file_id: str, **body: Any
) -> dict[str, Any]:
    """Attach a file and run its index job; the file as the store then shows it."""
    resp = await client.post(
        f"/v1/vector_stores/{store_id}/files", json={"file_id": file_id, **body}, headers=auth(key)
    )
    assert resp.status_code == 200, resp.text
    core.jobs.pool(0).drain()
    got = await client.get(f"/v1/vector_stores/{store_id}/files/{file_id}", headers=auth(key))
    assert got.status_code == 200, got.text
    vs_file: dict[str, Any] = got.json()
    return vs_file


def assert_error(resp: httpx.Response, status: int, param: str | None = None, code: str | None = None) -> str:
    """OpenAI's error body with exactly its four fields; returns the message."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str), body
    if param is not None:
        assert err["param"] == param, body
    if code is not None:
        assert err["code"] == code, body
    message: str = err["message"]
    return message
