"""Shared fixtures and helpers of the Dify dialect's API tests (``/v1``, dify-behaviour.md).

Use the fixtures by importing them into a test module and requesting them by mark (a parameter named like an
imported fixture trips ruff's F811)::

    from tests.api.dify_helpers import dify  # noqa: F401  (a pytest fixture)

    pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dify")]

then take conftest's ``client`` and ``core``: they are the same app and core, with "minilm" registered.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from alexandria.domain.models import DataSource, Role, Workspace
from alexandria.services.core import Core
from tests.fakes import HashingEmbedder

# The exact keys of Dify's Dataset object (dify-behaviour §2.1), as returned by create, list items, get and patch.
DATASET_KEYS = frozenset(
    {
        "id", "name", "description", "provider", "permission", "data_source_type", "indexing_technique",
        "app_count", "document_count", "word_count",
        "created_by", "author_name", "created_at", "updated_by", "updated_at",
        "embedding_model", "embedding_model_provider", "embedding_available",
        "retrieval_model_dict", "summary_index_setting", "tags", "doc_form",
        "external_knowledge_info", "external_retrieval_model", "doc_metadata", "built_in_field_enabled",
        "pipeline_id", "runtime_mode", "chunk_structure", "icon_info",
        "is_published", "total_documents", "total_available_documents", "enable_api", "is_multimodal",
    }
)  # fmt: skip


@pytest.fixture
def dify(core: Core) -> Core:
    """The test core with the fake embedder registered as "minilm", the default embedder of Dify datasets (no real
    model loads)."""
    core.embedders.register("minilm", HashingEmbedder())
    return core


@pytest.fixture
def dify_client(dify: Core, client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The in-process client over an app whose core embeds with the fake "minilm"."""
    return client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def workspace_key(core: Core, sid: str, role: Role = Role.BUILDER, dataset_id: str | None = None) -> str:
    """The secret of a new key of workspace ``sid`` (created if needed); bound to one dataset if ``dataset_id``."""
    ws, _ = core.catalog.ensure_workspace(sid)
    bound = dataset_of(core, ws, dataset_id).id if dataset_id is not None else None
    _, secret = core.keys.create(ws, role, data_source_id=bound)
    return secret


def dataset_of(core: Core, ws: Workspace, dataset_id: str) -> DataSource:
    ds = core.store.get_data_source_by_uuid(ws.id, dataset_id)
    assert ds is not None, dataset_id
    return ds


async def create_dataset(client: httpx.AsyncClient, key: str, name: str, **body: Any) -> dict[str, Any]:
    """POST /v1/datasets; returns the Dataset object (asserts 200)."""
    resp = await client.post("/v1/datasets", json={"name": name, **body}, headers=auth(key))
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def create_document(
    client: httpx.AsyncClient, key: str, dataset_id: str, name: str, text: str, **body: Any
) -> dict[str, Any]:
    """POST .../document/create-by-text (high_quality unless given); returns ``{document, batch}`` (asserts 200).
    The document is only queued: drive the queue with ``core.jobs.pool(0).drain()``."""
    payload = {"name": name, "text": text, "indexing_technique": "high_quality", **body}
    resp = await client.post(f"/v1/datasets/{dataset_id}/document/create-by-text", json=payload, headers=auth(key))
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def assert_dify_error(resp: httpx.Response, status: int, code: str, message: str | None = None) -> dict[str, Any]:
    """Dify's error envelope, exactly ``{"code", "message", "status"}``; returns the body."""
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert set(body) == {"code", "message", "status"}, body
    assert body["code"] == code, body
    assert body["status"] == status, body
    assert isinstance(body["message"], str), body
    if message is not None:
        assert body["message"] == message, body
    return body
