"""A rejected Dify document write changes nothing (issue 11, item 2): every check of a create/update by text or by
file runs before the dataset's settings (``process_rule``, and on an empty dataset ``indexing_technique``,
``doc_form`` and ``retrieval_model``), the uploaded file or the document are written."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from alexandria.config import Settings
from alexandria.services.core import Core
from tests.api.dify_helpers import (
    assert_dify_error,
    auth,
    create_dataset,
    dify,  # noqa: F401  (a pytest fixture)
    workspace_key,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dify"), pytest.mark.backends("sqlite", "postgres")]

UPLOAD_LIMIT_MB = 0.01
TEXT_LIMIT_MB = 0.01
CUSTOM_RULE = {
    "mode": "custom",
    "rules": {"pre_processing_rules": [], "segmentation": {"separator": "###", "max_tokens": 77}},
}
# everything a first document fixes on an empty dataset, all different from the defaults
FIRST_OPTIONS = {
    "indexing_technique": "economy",
    "doc_form": "text_model",
    "process_rule": CUSTOM_RULE,
    "retrieval_model": {"search_method": "full_text_search", "reranking_enable": False, "top_k": 7,
                        "score_threshold_enabled": False},
}  # fmt: skip
EXE = ("tool.exe", b"MZ\x90\x00", "application/octet-stream")
BIG = ("big.txt", b"x" * int(UPLOAD_LIMIT_MB * 1024 * 1024 + 1), "text/plain")
BIG_TEXT = "y" * int(TEXT_LIMIT_MB * 1024 * 1024 + 1)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"max_document_mb": TEXT_LIMIT_MB, "max_body_mb": 1, "upload_file_size_limit_mb": UPLOAD_LIMIT_MB}
    )


async def state(client: httpx.AsyncClient, core: Core, key: str, ds: str) -> dict[str, Any]:
    """What a client and the store see of the dataset: its stored settings, its answer, its documents (and the
    detail of each) and the workspace's uploaded files."""
    got = await client.get(f"/v1/datasets/{ds}", headers=auth(key))
    assert got.status_code == 200, got.text
    docs = await client.get(f"/v1/datasets/{ds}/documents", headers=auth(key))
    details = [
        (await client.get(f"/v1/datasets/{ds}/documents/{d['id']}", headers=auth(key))).json()
        for d in docs.json()["data"]
    ]
    stored = core.store.get_data_source_by_uuid(core.catalog.ensure_workspace("w1")[0].id, ds)
    assert stored is not None
    return {"settings": stored.dify, "dataset": got.json(), "documents": docs.json(), "details": details}


def files_of(core: Core) -> int:
    ws = core.catalog.ensure_workspace("w1")[0]
    with core.store.db.read() as conn:  # type: ignore[attr-defined]  # the storage facade: no service lists files
        return int(conn.scalar("SELECT COUNT(*) FROM files WHERE workspace_id = ?", (ws.id,)))


async def upload(
    client: httpx.AsyncClient, key: str, url: str, file: Any, data: dict[str, Any], method: str = "POST"
) -> httpx.Response:
    return await client.request(method, url, files={"file": file}, data={"data": json.dumps(data)}, headers=auth(key))


@pytest.mark.parametrize("dataset", ["empty", "with a document"])
async def test_rejected_creates_change_nothing(client: httpx.AsyncClient, core: Core, dataset: str) -> None:
    key = workspace_key(core, "w1")
    ds = (await create_dataset(client, key, "kb"))["id"]
    if dataset != "empty":
        resp = await client.post(
            f"/v1/datasets/{ds}/document/create-by-text",
            json={"name": "first", "text": "First text.", "indexing_technique": "high_quality"},
            headers=auth(key),
        )
        assert resp.status_code == 200, resp.text
        core.jobs.pool(0).drain()
    before, files = await state(client, core, key, ds), files_of(core)
    options = FIRST_OPTIONS if dataset == "empty" else {"process_rule": CUSTOM_RULE}

    for path in ("create-by-file", "create_by_file"):
        for file in (EXE, BIG):
            resp = await upload(client, key, f"/v1/datasets/{ds}/document/{path}", file, options)
            assert_dify_error(resp, 400, "invalid_param")
            assert await state(client, core, key, ds) == before
            assert files_of(core) == files
    for path in ("create-by-text", "create_by_text"):
        resp = await client.post(
            f"/v1/datasets/{ds}/document/{path}",
            json={"name": "big", "text": BIG_TEXT, **options},
            headers=auth(key),
        )
        assert_dify_error(resp, 400, "invalid_param")
        assert await state(client, core, key, ds) == before

    # the same options with an acceptable file are applied (so the checks above could see a change)
    resp = await upload(client, key, f"/v1/datasets/{ds}/document/create-by-file", ("ok.txt", b"Fine.", "text/plain"),
                        options)  # fmt: skip
    assert resp.status_code == 200, resp.text
    after = await state(client, core, key, ds)
    assert after["settings"]["process_rule"]["rules"]["segmentation"]["max_tokens"] == 77
    if dataset == "empty":
        assert after["settings"]["indexing_technique"] == "economy"
        assert after["settings"]["retrieval_model"]["top_k"] == 7
    assert files_of(core) == files + 1


async def test_rejected_updates_change_nothing(client: httpx.AsyncClient, core: Core) -> None:
    key = workspace_key(core, "w1")
    ds = (await create_dataset(client, key, "kb"))["id"]
    resp = await upload(client, key, f"/v1/datasets/{ds}/document/create-by-file",
                        ("a.txt", b"Alpha text.", "text/plain"), {"indexing_technique": "high_quality"})  # fmt: skip
    assert resp.status_code == 200, resp.text
    doc = resp.json()["document"]["id"]
    core.jobs.pool(0).drain()
    before, files = await state(client, core, key, ds), files_of(core)

    for path, method in (
        (f"documents/{doc}/update-by-file", "POST"),
        (f"documents/{doc}/update_by_file", "POST"),
        (f"documents/{doc}", "PATCH"),
    ):
        for file, status, code in ((EXE, 415, "unsupported_file_type"), (BIG, 413, "file_too_large")):
            resp = await upload(client, key, f"/v1/datasets/{ds}/{path}", file, {"process_rule": CUSTOM_RULE}, method)
            assert_dify_error(resp, status, code)
            assert await state(client, core, key, ds) == before
            assert files_of(core) == files
    for path in ("update-by-text", "update_by_text"):
        resp = await client.post(
            f"/v1/datasets/{ds}/documents/{doc}/{path}",
            json={"name": "big", "text": BIG_TEXT, "process_rule": CUSTOM_RULE},
            headers=auth(key),
        )
        assert_dify_error(resp, 400, "invalid_param")
        assert await state(client, core, key, ds) == before
