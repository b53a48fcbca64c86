"""Dify dialect: datasets, auth and tenancy, metadata fields and knowledge tags under ``/v1``
(dify-behaviour.md §1, §2.1, §2.5, §2.6, §2.7, §5, §8). The in-process app runs no workers: documents are indexed
by draining the job queue."""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
import httpx
import pytest

from alexandria.domain.models import Role
from alexandria.services.core import Core
from tests.api.dify_helpers import (  # noqa: F401  (dify: a pytest fixture)
    DATASET_KEYS,
    assert_dify_error,
    auth,
    create_dataset,
    create_document,
    dataset_of,
    dify,
    workspace_key,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dify"), pytest.mark.backends("sqlite", "postgres")]

HEADER_MESSAGE = "Authorization header must be provided and start with 'Bearer'"
SCHEME_MESSAGE = "Authorization scheme must be 'Bearer'"
TOKEN_MESSAGE = "Access token is invalid"
BAD_JSON_MESSAGE = "Invalid JSON payload received or JSON payload is empty."
NOT_FOUND = "Dataset not found."
BUILT_INS = [
    {"name": "document_name", "type": "string"},
    {"name": "uploader", "type": "string"},
    {"name": "upload_date", "type": "time"},
    {"name": "last_update_date", "type": "time"},
    {"name": "source", "type": "string"},
]
BUILT_IN_NAMES = {f["name"] for f in BUILT_INS}
RETRIEVAL_KEYS = {
    "search_method",
    "reranking_enable",
    "reranking_mode",
    "reranking_model",
    "weights",
    "top_k",
    "score_threshold_enabled",
    "score_threshold",
}

Client = httpx.AsyncClient


# --- helpers -----------------------------------------------------------------------------------------------------
async def get_json(client: Client, key: str, path: str, status: int = 200, **params: Any) -> Any:
    resp = await client.get(path, params=params or None, headers=auth(key))
    assert resp.status_code == status, resp.text
    return resp.json()


async def get_dataset(client: Client, key: str, dataset_id: str) -> dict[str, Any]:
    out: dict[str, Any] = await get_json(client, key, f"/v1/datasets/{dataset_id}")
    return out


async def list_names(client: Client, key: str, **params: Any) -> list[str]:
    body = await get_json(client, key, "/v1/datasets", **params)
    return [d["name"] for d in body["data"]]


async def create_tag(client: Client, key: str, name: str) -> dict[str, Any]:
    resp = await client.post("/v1/datasets/tags", json={"name": name}, headers=auth(key))
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def tags_by_name(client: Client, key: str) -> dict[str, dict[str, Any]]:
    body = await get_json(client, key, "/v1/datasets/tags")
    assert isinstance(body, list)
    return {t["name"]: t for t in body}


async def bind(client: Client, key: str, dataset_id: str, tag_ids: list[str]) -> None:
    resp = await client.post(
        "/v1/datasets/tags/binding", json={"tag_ids": tag_ids, "target_id": dataset_id}, headers=auth(key)
    )
    assert resp.status_code == 204, resp.text
    assert resp.content == b""


async def create_field(client: Client, key: str, dataset_id: str, name: str, type_: str = "string") -> dict[str, Any]:
    resp = await client.post(
        f"/v1/datasets/{dataset_id}/metadata", json={"name": name, "type": type_}, headers=auth(key)
    )
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def set_doc_metadata(
    client: Client, key: str, dataset_id: str, document_id: str, items: list[dict[str, Any]], partial: bool = False
) -> httpx.Response:
    op: dict[str, Any] = {"document_id": document_id, "metadata_list": items}
    if partial:
        op["partial_update"] = True
    return await client.post(
        f"/v1/datasets/{dataset_id}/documents/metadata", json={"operation_data": [op]}, headers=auth(key)
    )


async def doc_metadata(client: Client, key: str, dataset_id: str, document_id: str) -> dict[str, Any]:
    """A document's ``doc_metadata`` (GET document), as name -> value; checks each item's shape."""
    body = await get_json(client, key, f"/v1/datasets/{dataset_id}/documents/{document_id}")
    out: dict[str, Any] = {}
    for item in body["doc_metadata"]:
        assert set(item) == {"id", "name", "type", "value"}, item
        out[item["name"]] = item["value"]
    return out


def missing_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def key(core: Core) -> str:
    return workspace_key(core, "wa")


@pytest.fixture
def key_b(core: Core) -> str:
    return workspace_key(core, "wb")


# --- auth (§5) -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("header", [None, "", "Bearer", "bearer-token-without-space"])
async def test_missing_or_spaceless_header_is_401(client: Client, key: str, header: str | None) -> None:
    ds = await create_dataset(client, key, "kb")
    headers = {} if header is None else {"Authorization": header}
    for method, path in [
        ("GET", "/v1/datasets"),
        ("POST", "/v1/datasets"),
        ("GET", f"/v1/datasets/{ds['id']}"),
        ("GET", "/v1/datasets/tags"),
        ("GET", f"/v1/datasets/{ds['id']}/metadata"),
    ]:
        resp = await client.request(method, path, headers=headers)
        assert_dify_error(resp, 401, "unauthorized", HEADER_MESSAGE)
        assert resp.headers["www-authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Bearer:"])
async def test_non_bearer_scheme_is_401(client: Client, key: str, scheme: str) -> None:
    resp = await client.get("/v1/datasets", headers={"Authorization": f"{scheme} {key}"})
    assert_dify_error(resp, 401, "unauthorized", SCHEME_MESSAGE)
    assert resp.headers["www-authenticate"] == 'Bearer realm="api"'


async def test_scheme_is_case_insensitive(client: Client, key: str) -> None:
    for scheme in ("bearer", "BEARER", "Bearer"):
        resp = await client.get("/v1/datasets", headers={"Authorization": f"{scheme} {key}"})
        assert resp.status_code == 200, resp.text


async def test_unknown_key_is_401_before_anything_else(client: Client, key: str) -> None:
    ds = await create_dataset(client, key, "kb")
    bad = auth("dataset-this-key-does-not-exist")
    for resp in [
        await client.get("/v1/datasets", headers=bad),
        await client.get(f"/v1/datasets/{ds['id']}", headers=bad),
        await client.get(f"/v1/datasets/{missing_id()}", headers=bad),  # auth comes before dataset lookup
        await client.post("/v1/datasets", content=b"{not json", headers=bad),  # ... and before the body
        await client.delete(f"/v1/datasets/{ds['id']}", headers=bad),
        await client.post("/v1/datasets/tags", json={"name": "t"}, headers=bad),
    ]:
        assert_dify_error(resp, 401, "unauthorized", TOKEN_MESSAGE)
        assert resp.headers["www-authenticate"] == 'Bearer realm="api"'
    assert (await get_dataset(client, key, ds["id"]))["name"] == "kb"  # the delete did nothing


async def test_non_401_errors_carry_no_www_authenticate(client: Client, key: str) -> None:
    resp = await client.get(f"/v1/datasets/{missing_id()}", headers=auth(key))
    assert_dify_error(resp, 404, "not_found", NOT_FOUND)
    assert "www-authenticate" not in resp.headers


async def test_user_role_key_is_403(client: Client, core: Core, key: str) -> None:
    ds = await create_dataset(client, key, "kb")
    user_key = workspace_key(core, "wa", Role.USER)
    for method, path, body in [
        ("GET", "/v1/datasets", None),
        ("POST", "/v1/datasets", {"name": "mine"}),
        ("GET", f"/v1/datasets/{ds['id']}", None),
        ("PATCH", f"/v1/datasets/{ds['id']}", {"name": "renamed"}),
        ("DELETE", f"/v1/datasets/{ds['id']}", None),
        ("GET", "/v1/datasets/tags", None),
        ("POST", f"/v1/datasets/{ds['id']}/metadata", {"name": "m", "type": "string"}),
    ]:
        resp = await client.request(method, path, json=body, headers=auth(user_key))
        assert_dify_error(resp, 403, "forbidden")
        assert "www-authenticate" not in resp.headers
    assert await list_names(client, key) == ["kb"]  # nothing created, renamed or deleted


@pytest.mark.parametrize("role", [Role.ADMIN, Role.BUILDER, Role.SYSTEM])
async def test_writer_roles_act_as_owner(client: Client, core: Core, role: Role) -> None:
    k = workspace_key(core, "wa", role)
    ds = await create_dataset(client, k, f"kb-{role.value}")
    assert (await get_dataset(client, k, ds["id"]))["id"] == ds["id"]


# --- tenancy (§5: other tenants' datasets are indistinguishable from missing ones) -------------------------------
async def _populate(client: Client, core: Core, key: str, name: str) -> dict[str, Any]:
    """A dataset with a document (indexed), a metadata field with a value on it and a bound tag."""
    ds = await create_dataset(client, key, name)
    doc = (await create_document(client, key, ds["id"], f"{name}-doc", f"{name} secret text about otters"))["document"]
    core.jobs.pool(0).drain()
    field = await create_field(client, key, ds["id"], "owner")
    resp = await set_doc_metadata(client, key, ds["id"], doc["id"], [{**field, "value": name}])
    assert resp.status_code == 200, resp.text
    tag = await create_tag(client, key, f"{name}-tag")
    await bind(client, key, ds["id"], [tag["id"]])
    return {"ds": ds, "doc": doc, "field": field, "tag": tag}


async def _snapshot(client: Client, key: str, world: dict[str, Any]) -> Any:
    ds_id, doc_id = world["ds"]["id"], world["doc"]["id"]
    dataset = await get_dataset(client, key, ds_id)
    dataset.pop("updated_at")
    return (
        dataset,
        await get_json(client, key, "/v1/datasets"),
        await get_json(client, key, f"/v1/datasets/{ds_id}/documents"),
        await get_json(client, key, f"/v1/datasets/{ds_id}/documents/{doc_id}"),
        await get_json(client, key, f"/v1/datasets/{ds_id}/metadata"),
        await get_json(client, key, "/v1/datasets/tags"),
        await get_json(client, key, f"/v1/datasets/{ds_id}/tags"),
    )


async def _attack(client: Client, key: str, own: dict[str, Any], other: dict[str, Any]) -> None:
    """Every read and write of ``other``'s data with ``key`` fails, in Dify's envelope."""
    ds_id, doc_id, field_id = other["ds"]["id"], other["doc"]["id"], other["field"]["id"]
    h = auth(key)
    on_dataset = [
        ("GET", f"/v1/datasets/{ds_id}", None),
        ("PATCH", f"/v1/datasets/{ds_id}", {"name": "pwned", "description": "pwned"}),
        ("DELETE", f"/v1/datasets/{ds_id}", None),
        ("GET", f"/v1/datasets/{ds_id}/documents", None),
        ("GET", f"/v1/datasets/{ds_id}/documents/{doc_id}", None),
        ("DELETE", f"/v1/datasets/{ds_id}/documents/{doc_id}", None),
        ("POST", f"/v1/datasets/{ds_id}/document/create-by-text", {"name": "x", "text": "y"}),
        ("POST", f"/v1/datasets/{ds_id}/documents/{doc_id}/update-by-text", {"name": "x", "text": "y"}),
        ("PATCH", f"/v1/datasets/{ds_id}/documents/status/disable", {"document_ids": [doc_id]}),
        ("GET", f"/v1/datasets/{ds_id}/metadata", None),
        ("POST", f"/v1/datasets/{ds_id}/metadata", {"name": "pwned", "type": "string"}),
        ("PATCH", f"/v1/datasets/{ds_id}/metadata/{field_id}", {"name": "pwned"}),
        ("DELETE", f"/v1/datasets/{ds_id}/metadata/{field_id}", None),
        ("GET", f"/v1/datasets/{ds_id}/metadata/built-in", None),
        ("POST", f"/v1/datasets/{ds_id}/metadata/built-in/enable", None),
        (
            "POST",
            f"/v1/datasets/{ds_id}/documents/metadata",
            {"operation_data": [{"document_id": doc_id, "metadata_list": []}]},
        ),
        ("GET", f"/v1/datasets/{ds_id}/tags", None),
        ("POST", "/v1/datasets/tags/binding", {"tag_ids": [own["tag"]["id"]], "target_id": ds_id}),
        ("POST", "/v1/datasets/tags/unbinding", {"tag_ids": [other["tag"]["id"]], "target_id": ds_id}),
        ("POST", f"/v1/datasets/{ds_id}/retrieve", {"query": "otters"}),
    ]
    for method, path, body in on_dataset:
        resp = await client.request(method, path, json=body, headers=h)
        assert_dify_error(resp, 404, "not_found", NOT_FOUND)

    own_ds = own["ds"]["id"]
    # the other tenant's document, field and tags through one's own dataset or the tenant-wide tag routes
    resp = await client.get(f"/v1/datasets/{own_ds}/documents/{doc_id}", headers=h)
    assert_dify_error(resp, 404, "not_found")
    resp = await client.delete(f"/v1/datasets/{own_ds}/documents/{doc_id}", headers=h)
    assert_dify_error(resp, 404, "not_found")
    resp = await set_doc_metadata(client, key, own_ds, doc_id, [{**own["field"], "value": "pwned"}])
    assert_dify_error(resp, 400, "invalid_param")
    resp = await set_doc_metadata(client, key, own_ds, own["doc"]["id"], [{**other["field"], "value": "pwned"}])
    assert_dify_error(resp, 400, "invalid_param")
    resp = await client.patch(f"/v1/datasets/{own_ds}/metadata/{field_id}", json={"name": "pwned"}, headers=h)
    assert resp.status_code in (400, 404), resp.text
    assert_dify_error(resp, resp.status_code, "invalid_param" if resp.status_code == 400 else "not_found")
    resp = await client.delete(f"/v1/datasets/{own_ds}/metadata/{field_id}", headers=h)
    assert resp.status_code in (400, 404), resp.text
    resp = await client.patch("/v1/datasets/tags", json={"tag_id": other["tag"]["id"], "name": "pwned"}, headers=h)
    assert_dify_error(resp, 404, "not_found")
    resp = await client.request("DELETE", "/v1/datasets/tags", json={"tag_id": other["tag"]["id"]}, headers=h)
    assert_dify_error(resp, 404, "not_found")
    # binding the other tenant's tag to one's own dataset is ignored, as unknown tag ids are
    await bind(client, key, own_ds, [other["tag"]["id"]])
    assert [t["id"] for t in (await get_dataset(client, key, own_ds))["tags"]] == [own["tag"]["id"]]
    resp = await client.post(
        "/v1/datasets/tags/unbinding", json={"tag_ids": [other["tag"]["id"]], "target_id": own_ds}, headers=h
    )
    assert resp.status_code == 204, resp.text
    # the other tenant's datasets and tags are invisible
    assert other["ds"]["name"] not in await list_names(client, key)
    assert other["tag"]["name"] not in await tags_by_name(client, key)
    assert await list_names(client, key, keyword=other["ds"]["name"]) == []
    assert await list_names(client, key, tag_ids=other["tag"]["id"]) == []
    resp = await client.post("/v1/datasets/tags", json={"name": other["tag"]["name"]}, headers=h)
    assert resp.status_code == 200, resp.text  # tag names are per tenant
    await client.request("DELETE", "/v1/datasets/tags", json={"tag_id": resp.json()["id"]}, headers=h)


async def test_tenants_are_isolated_both_ways(client: Client, core: Core, key: str, key_b: str) -> None:
    world_a = await _populate(client, core, key, "alpha")
    world_b = await _populate(client, core, key_b, "beta")
    before_a = await _snapshot(client, key, world_a)
    before_b = await _snapshot(client, key_b, world_b)

    await _attack(client, key, world_a, world_b)
    await _attack(client, key_b, world_b, world_a)
    core.jobs.pool(0).drain()

    assert await _snapshot(client, key_b, world_b) == before_b
    assert await _snapshot(client, key, world_a) == before_a


async def test_same_dataset_name_in_two_tenants(client: Client, key: str, key_b: str) -> None:
    a = await create_dataset(client, key, "shared name")
    b = await create_dataset(client, key_b, "shared name")
    assert a["id"] != b["id"]
    assert await list_names(client, key) == ["shared name"]
    assert await list_names(client, key_b) == ["shared name"]


async def test_key_bound_to_one_dataset(client: Client, core: Core, key: str) -> None:
    mine = await create_dataset(client, key, "mine")
    other = await create_dataset(client, key, "other")
    tag = await create_tag(client, key, "t")
    bound = workspace_key(core, "wa", dataset_id=mine["id"])
    h = auth(bound)

    # its own dataset: reads and writes work
    assert (await get_dataset(client, bound, mine["id"]))["name"] == "mine"
    resp = await client.patch(f"/v1/datasets/{mine['id']}", json={"description": "d"}, headers=h)
    assert resp.status_code == 200, resp.text
    assert (await create_field(client, bound, mine["id"], "f"))["name"] == "f"
    await bind(client, bound, mine["id"], [tag["id"]])
    assert (await get_json(client, bound, f"/v1/datasets/{mine['id']}/tags"))["total"] == 1

    # another dataset of the same workspace: 403
    for method, path, body in [
        ("GET", f"/v1/datasets/{other['id']}", None),
        ("PATCH", f"/v1/datasets/{other['id']}", {"name": "x"}),
        ("DELETE", f"/v1/datasets/{other['id']}", None),
        ("GET", f"/v1/datasets/{other['id']}/documents", None),
        ("POST", f"/v1/datasets/{other['id']}/metadata", {"name": "f", "type": "string"}),
        ("GET", f"/v1/datasets/{other['id']}/tags", None),
        ("POST", "/v1/datasets/tags/binding", {"tag_ids": [tag["id"]], "target_id": other["id"]}),
    ]:
        resp = await client.request(method, path, json=body, headers=h)
        assert_dify_error(resp, 403, "forbidden")

    # routes about no single dataset: 403
    for method, path, body in [
        ("GET", "/v1/datasets", None),
        ("POST", "/v1/datasets", {"name": "new"}),
        ("GET", "/v1/datasets/tags", None),
        ("POST", "/v1/datasets/tags", {"name": "new"}),
        ("PATCH", "/v1/datasets/tags", {"tag_id": tag["id"], "name": "new"}),
        ("DELETE", "/v1/datasets/tags", {"tag_id": tag["id"]}),
    ]:
        resp = await client.request(method, path, json=body, headers=h)
        assert_dify_error(resp, 403, "forbidden")

    # a missing dataset is still 404, and nothing changed
    assert_dify_error(await client.get(f"/v1/datasets/{missing_id()}", headers=h), 404, "not_found", NOT_FOUND)
    assert await list_names(client, key) == ["other", "mine"]
    assert (await get_dataset(client, key, other["id"]))["tags"] == []
    assert list(await tags_by_name(client, key)) == ["t"]


async def test_dataset_with_api_access_disabled_is_403(client: Client, core: Core, key: str) -> None:
    ds = await create_dataset(client, key, "kb")
    ws, _ = core.catalog.ensure_workspace("wa")
    src = dataset_of(core, ws, ds["id"])
    core.store.update_data_source(src, src.name, src.description, {**src.dify, "enable_api": False})
    for method, path, body in [
        ("GET", f"/v1/datasets/{ds['id']}", None),
        ("PATCH", f"/v1/datasets/{ds['id']}", {"name": "x"}),
        ("DELETE", f"/v1/datasets/{ds['id']}", None),
        ("GET", f"/v1/datasets/{ds['id']}/documents", None),
        ("POST", f"/v1/datasets/{ds['id']}/document/create-by-text", {"name": "x", "text": "y"}),
        ("GET", f"/v1/datasets/{ds['id']}/metadata", None),
        ("POST", f"/v1/datasets/{ds['id']}/metadata", {"name": "f", "type": "string"}),
        ("GET", f"/v1/datasets/{ds['id']}/tags", None),
    ]:
        resp = await client.request(method, path, json=body, headers=auth(key))
        assert_dify_error(resp, 403, "forbidden", "Dataset api access is not enabled.")
    # still listed, flagged
    (item,) = (await get_json(client, key, "/v1/datasets"))["data"]
    assert item["name"] == "kb" and item["enable_api"] is False and item["document_count"] == 0
    # a missing dataset is 404 before anything else
    assert_dify_error(await client.get(f"/v1/datasets/{missing_id()}", headers=auth(key)), 404, "not_found", NOT_FOUND)


# --- datasets (§2.1) -----------------------------------------------------------------------------------------------
async def test_create_dataset_shape_and_defaults(client: Client, key: str) -> None:
    before = int(time.time())
    resp = await client.post("/v1/datasets", json={"name": "Product Docs"}, headers=auth(key))
    assert resp.status_code == 200, resp.text
    ds = resp.json()
    assert set(ds) == DATASET_KEYS
    uuid.UUID(ds["id"])
    assert ds["name"] == "Product Docs"
    assert ds["description"] == ""
    assert ds["provider"] == "vendor"
    assert ds["permission"] == "only_me"
    assert ds["data_source_type"] is None
    assert ds["indexing_technique"] is None
    assert ds["app_count"] == 0 and ds["document_count"] == 0 and ds["word_count"] == 0
    assert isinstance(ds["created_by"], str) and isinstance(ds["author_name"], str)
    assert isinstance(ds["updated_by"], str)
    for k in ("created_at", "updated_at"):
        assert type(ds[k]) is int and before - 1 <= ds[k] <= before + 5  # Unix seconds
    assert ds["embedding_model"] is None and ds["embedding_model_provider"] is None
    assert ds["embedding_available"] is True
    assert ds["retrieval_model_dict"] == {
        "search_method": "semantic_search",
        "reranking_enable": False,
        "reranking_mode": None,
        "reranking_model": {"reranking_provider_name": "", "reranking_model_name": ""},
        "weights": None,
        "top_k": 2,
        "score_threshold_enabled": False,
        "score_threshold": None,
    }
    assert ds["summary_index_setting"] is None
    assert ds["tags"] == [] and ds["doc_metadata"] == []
    assert ds["doc_form"] is None and ds["chunk_structure"] is None
    assert ds["external_knowledge_info"] is None and ds["external_retrieval_model"] is None
    assert ds["built_in_field_enabled"] is False
    assert ds["pipeline_id"] is None and ds["icon_info"] is None
    assert ds["is_published"] is False and ds["is_multimodal"] is False
    assert ds["total_documents"] == 0 and ds["total_available_documents"] == 0
    assert ds["enable_api"] is True
    # get answers the same object
    got = await get_dataset(client, key, ds["id"])
    assert got == ds


async def test_create_dataset_with_options(client: Client, key: str) -> None:
    retrieval = {
        "search_method": "hybrid_search",
        "reranking_enable": False,
        "top_k": 7,
        "score_threshold_enabled": True,
        "score_threshold": 0.3,
        "reranking_mode": "weighted_score",
        "weights": {
            "weight_type": "customized",
            "vector_setting": {"vector_weight": 0.7, "embedding_provider_name": "", "embedding_model_name": ""},
            "keyword_setting": {"keyword_weight": 0.3},
        },
        "not_a_field": "dropped",  # the response holds the RetrievalModel keys only
    }
    ds = await create_dataset(
        client,
        key,
        "hq",
        description="about things",
        indexing_technique="high_quality",
        permission="all_team_members",
        retrieval_model=retrieval,
    )
    assert set(ds) == DATASET_KEYS
    assert ds["description"] == "about things"
    assert ds["indexing_technique"] == "high_quality"
    assert ds["permission"] == "all_team_members"
    assert isinstance(ds["embedding_model"], str) and ds["embedding_model"]
    assert isinstance(ds["embedding_model_provider"], str) and ds["embedding_model_provider"]
    rm = ds["retrieval_model_dict"]
    assert set(rm) == RETRIEVAL_KEYS
    assert rm["search_method"] == "hybrid_search" and rm["top_k"] == 7
    assert rm["score_threshold_enabled"] is True and rm["score_threshold"] == 0.3
    assert rm["reranking_mode"] == "weighted_score" and rm["weights"] == retrieval["weights"]
    assert "partial_member_list" not in await get_dataset(client, key, ds["id"])


async def test_economy_dataset_reports_keyword_search(client: Client, key: str) -> None:
    ds = await create_dataset(client, key, "cheap", indexing_technique="economy")
    got = await get_dataset(client, key, ds["id"])
    assert got["indexing_technique"] == "economy"
    assert got["retrieval_model_dict"]["search_method"] == "keyword_search"
    assert got["embedding_model"] is None


@pytest.mark.parametrize("name", ["a", "x" * 40, "Données clients 2024", "with/slash & ümlaut?"])
async def test_dataset_name_accepts_1_to_40_chars(client: Client, key: str, name: str) -> None:
    ds = await create_dataset(client, key, name)
    assert ds["name"] == name
    assert (await get_dataset(client, key, ds["id"]))["name"] == name


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x" * 41},
        {"name": ""},
        {},
        {"name": None},
        {"name": 12},
        {"name": "ok", "description": "d" * 401},
        {"name": "ok", "indexing_technique": "premium"},
        {"name": "ok", "permission": "everyone"},
        ["name"],  # not an object
    ],
)
async def test_create_dataset_invalid_params(client: Client, key: str, body: Any) -> None:
    resp = await client.post("/v1/datasets", json=body, headers=auth(key))
    assert_dify_error(resp, 400, "invalid_param")
    assert await list_names(client, key) == []


async def test_description_of_400_chars_is_fine(client: Client, key: str) -> None:
    ds = await create_dataset(client, key, "d", description="d" * 400)
    assert ds["description"] == "d" * 400


async def test_duplicate_dataset_name_is_409(client: Client, key: str) -> None:
    first = await create_dataset(client, key, "kb")
    resp = await client.post("/v1/datasets", json={"name": "kb"}, headers=auth(key))
    assert_dify_error(
        resp, 409, "dataset_name_duplicate", "The dataset name already exists. Please modify your dataset name."
    )
    body = await get_json(client, key, "/v1/datasets")
    assert [d["id"] for d in body["data"]] == [first["id"]]


@pytest.mark.parametrize("content", [b"", b"   ", b"{", b"not json", b'{"name": "x",}'])
async def test_empty_or_invalid_json_is_bad_request(client: Client, key: str, content: bytes) -> None:
    ds = await create_dataset(client, key, "kb")
    headers = {**auth(key), "Content-Type": "application/json"}
    for method, path in [
        ("POST", "/v1/datasets"),
        ("PATCH", f"/v1/datasets/{ds['id']}"),
        ("POST", f"/v1/datasets/{ds['id']}/metadata"),
        ("POST", "/v1/datasets/tags"),
        ("PATCH", "/v1/datasets/tags"),
        ("POST", "/v1/datasets/tags/binding"),
        ("POST", f"/v1/datasets/{ds['id']}/documents/metadata"),
    ]:
        resp = await client.request(method, path, content=content, headers=headers)
        assert_dify_error(resp, 400, "bad_request", BAD_JSON_MESSAGE)
    assert await list_names(client, key) == ["kb"]


async def test_unknown_route_is_404_not_found(client: Client, key: str) -> None:
    ds = await create_dataset(client, key, "kb")
    for path in ["/v1/nope", "/v1/datasets/x/y/z/w/v", f"/v1/datasets/{ds['id']}/nope"]:
        resp = await client.get(path, headers=auth(key))
        body = assert_dify_error(resp, 404, "not_found")
        assert body["message"].startswith("The requested URL was not found on the server.")


async def test_wrong_method_is_405_in_difys_envelope(client: Client, key: str) -> None:
    ds = await create_dataset(client, key, "kb")
    for method, path in [
        ("PUT", "/v1/datasets"),
        ("DELETE", "/v1/datasets"),
        ("PUT", f"/v1/datasets/{ds['id']}"),
        ("POST", f"/v1/datasets/{ds['id']}"),
        ("PUT", "/v1/datasets/tags"),
        ("GET", "/v1/datasets/tags/binding"),
        ("GET", f"/v1/datasets/{ds['id']}/metadata/built-in/enable"),
    ]:
        resp = await client.request(method, path, headers=auth(key))
        assert_dify_error(resp, 405, "method_not_allowed")


async def test_get_missing_dataset_is_404(client: Client, key: str) -> None:
    resp = await client.get(f"/v1/datasets/{missing_id()}", headers=auth(key))
    assert_dify_error(resp, 404, "not_found", NOT_FOUND)
    resp = await client.get("/v1/datasets/not-a-uuid", headers=auth(key))
    assert_dify_error(resp, 404, "not_found")


async def _make(client: Client, key: str, names: list[str]) -> list[dict[str, Any]]:
    out = []
    for name in names:
        out.append(await create_dataset(client, key, name))
        await anyio.sleep(0.003)  # distinct creation times
    return out


async def test_list_datasets_pagination(client: Client, key: str) -> None:
    made = await _make(client, key, [f"kb-{i}" for i in range(5)])
    newest_first = [d["id"] for d in reversed(made)]

    body = await get_json(client, key, "/v1/datasets")
    assert set(body) == {"data", "has_more", "limit", "total", "page"}
    assert body["page"] == 1 and body["limit"] == 20 and body["total"] == 5 and body["has_more"] is False
    assert [d["id"] for d in body["data"]] == newest_first
    for item in body["data"]:
        assert set(item) == DATASET_KEYS
    assert body["data"][0] == await get_dataset(client, key, made[-1]["id"])

    pages = [await get_json(client, key, "/v1/datasets", page=p, limit=2) for p in (1, 2, 3, 4)]
    assert [p["has_more"] for p in pages] == [True, True, False, False]  # page*limit < total
    assert [p["total"] for p in pages] == [5, 5, 5, 5]
    assert [p["limit"] for p in pages] == [2, 2, 2, 2]
    assert [p["page"] for p in pages] == [1, 2, 3, 4]
    assert [d["id"] for p in pages for d in p["data"]] == newest_first
    assert pages[3]["data"] == []  # past the end: empty, not an error

    exact = await get_json(client, key, "/v1/datasets", page=1, limit=5)
    assert exact["has_more"] is False and len(exact["data"]) == 5
    capped = await get_json(client, key, "/v1/datasets", limit=1000)
    assert capped["limit"] == 100 and capped["has_more"] is False and len(capped["data"]) == 5
    capped2 = await get_json(client, key, "/v1/datasets", page=2, limit=500)
    assert capped2["limit"] == 100 and capped2["page"] == 2 and capped2["data"] == []


async def test_list_datasets_limit_cap_drives_has_more(client: Client, core: Core, key: str) -> None:
    ws, _ = core.catalog.ensure_workspace("wa")
    for i in range(101):  # through the service: 101 HTTP round trips are slow
        core.dify.create_dataset(ws, {"name": f"bulk-{i:03d}"})
    body = await get_json(client, key, "/v1/datasets", limit=150)
    assert body["limit"] == 100 and body["total"] == 101 and body["has_more"] is True and len(body["data"]) == 100
    last = await get_json(client, key, "/v1/datasets", limit=150, page=2)
    assert last["has_more"] is False and len(last["data"]) == 1


async def test_list_datasets_keyword(client: Client, key: str) -> None:
    await _make(client, key, ["Alpha Docs", "beta notes", "ALPHABET", "gamma"])
    assert await list_names(client, key, keyword="alpha") == ["ALPHABET", "Alpha Docs"]
    assert await list_names(client, key, keyword="NOTES") == ["beta notes"]
    assert await list_names(client, key, keyword="zzz") == []
    body = await get_json(client, key, "/v1/datasets", keyword="a", limit=2)
    assert body["total"] == 4 and body["has_more"] is True
    assert await list_names(client, key, keyword="") == ["gamma", "ALPHABET", "beta notes", "Alpha Docs"]


async def test_list_datasets_by_tags(client: Client, key: str) -> None:
    a, b, c = await _make(client, key, ["a", "b", "c"])
    red, blue = await create_tag(client, key, "red"), await create_tag(client, key, "blue")
    await bind(client, key, a["id"], [red["id"]])
    await bind(client, key, b["id"], [red["id"], blue["id"]])

    assert await list_names(client, key, tag_ids=red["id"]) == ["b", "a"]
    assert await list_names(client, key, tag_ids=blue["id"]) == ["b"]
    # repeated tag_ids: datasets with any of them
    resp = await client.get("/v1/datasets", params=[("tag_ids", blue["id"]), ("tag_ids", red["id"])], headers=auth(key))
    assert [d["name"] for d in resp.json()["data"]] == ["b", "a"]
    # unknown tag ids give no data at all
    body = await get_json(client, key, "/v1/datasets", tag_ids=missing_id())
    assert body["data"] == [] and body["total"] == 0 and body["has_more"] is False
    assert await list_names(client, key, tag_ids=red["id"], keyword="b") == ["b"]
    assert await list_names(client, key) == ["c", "b", "a"]
    assert c["tags"] == []


async def test_patch_dataset_applies_only_given_keys(client: Client, key: str) -> None:
    ds = await create_dataset(client, key, "kb", description="first", permission="all_team_members")
    h = auth(key)

    resp = await client.patch(f"/v1/datasets/{ds['id']}", json={"description": "second"}, headers=h)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert set(out) == DATASET_KEYS | {"partial_member_list"}
    assert out["partial_member_list"] == []
    assert out["name"] == "kb" and out["description"] == "second" and out["permission"] == "all_team_members"
    assert out["id"] == ds["id"] and out["created_at"] == ds["created_at"]

    resp = await client.patch(f"/v1/datasets/{ds['id']}", json={"name": "renamed", "permission": None}, headers=h)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["name"] == "renamed" and out["description"] == "second" and out["permission"] == "all_team_members"

    retrieval = {"search_method": "full_text_search", "reranking_enable": False, "top_k": 3}
    retrieval |= {"score_threshold_enabled": False}
    resp = await client.patch(f"/v1/datasets/{ds['id']}", json={"retrieval_model": retrieval}, headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.json()["retrieval_model_dict"]["search_method"] == "full_text_search"
    assert resp.json()["retrieval_model_dict"]["top_k"] == 3

    resp = await client.patch(f"/v1/datasets/{ds['id']}", json={}, headers=h)
    assert resp.status_code == 200, resp.text
    resp = await client.patch(f"/v1/datasets/{ds['id']}", json={"name": None}, headers=h)  # None is dropped
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "renamed"

    got = await get_dataset(client, key, ds["id"])
    assert got["name"] == "renamed" and got["description"] == "second"
    assert got["retrieval_model_dict"]["search_method"] == "full_text_search"
    assert set(got) == DATASET_KEYS
    assert await list_names(client, key) == ["renamed"]


async def test_patch_partial_members(client: Client, key: str) -> None:
    ds = await create_dataset(client, key, "kb")
    body = {"permission": "partial_members", "partial_member_list": [{"user_id": "u-1"}, {"user_id": "u-2"}]}
    resp = await client.patch(f"/v1/datasets/{ds['id']}", json=body, headers=auth(key))
    assert resp.status_code == 200, resp.text
    assert resp.json()["permission"] == "partial_members"
    assert resp.json()["partial_member_list"] == ["u-1", "u-2"]  # account ids
    got = await get_dataset(client, key, ds["id"])
    assert set(got) == DATASET_KEYS | {"partial_member_list"}
    assert got["partial_member_list"] == ["u-1", "u-2"]
    # back to only_me: the member list is cleared and GET no longer shows it
    resp = await client.patch(f"/v1/datasets/{ds['id']}", json={"permission": "only_me"}, headers=auth(key))
    assert resp.status_code == 200, resp.text
    assert resp.json()["partial_member_list"] == []
    assert "partial_member_list" not in await get_dataset(client, key, ds["id"])
    # a malformed member list is an invalid_param, and changes nothing
    for members in ([{"id": "u-1"}], ["u-1"], "u-1"):
        body = {"permission": "partial_members", "partial_member_list": members}
        resp = await client.patch(f"/v1/datasets/{ds['id']}", json=body, headers=auth(key))
        assert_dify_error(resp, 400, "invalid_param")
    assert (await get_dataset(client, key, ds["id"]))["permission"] == "only_me"


async def test_patch_rename_to_existing_name_is_400(client: Client, key: str) -> None:
    await create_dataset(client, key, "taken")
    ds = await create_dataset(client, key, "kb")
    resp = await client.patch(f"/v1/datasets/{ds['id']}", json={"name": "taken"}, headers=auth(key))
    assert_dify_error(resp, 400, "invalid_param", "Dataset name already exists")
    assert (await get_dataset(client, key, ds["id"]))["name"] == "kb"
    # renaming to its own name is no conflict
    resp = await client.patch(f"/v1/datasets/{ds['id']}", json={"name": "kb"}, headers=auth(key))
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("body", [{"name": "x" * 41}, {"name": ""}, {"description": "d" * 401}])
async def test_patch_dataset_invalid_params(client: Client, key: str, body: dict[str, Any]) -> None:
    ds = await create_dataset(client, key, "kb", description="keep")
    resp = await client.patch(f"/v1/datasets/{ds['id']}", json=body, headers=auth(key))
    assert_dify_error(resp, 400, "invalid_param")
    got = await get_dataset(client, key, ds["id"])
    assert got["name"] == "kb" and got["description"] == "keep"


async def test_patch_missing_dataset_is_404(client: Client, key: str) -> None:
    resp = await client.patch(f"/v1/datasets/{missing_id()}", json={"name": "x"}, headers=auth(key))
    assert_dify_error(resp, 404, "not_found", NOT_FOUND)


async def test_delete_dataset(client: Client, core: Core, key: str) -> None:
    keep = await create_dataset(client, key, "keep")
    ds = await create_dataset(client, key, "gone")
    await create_document(client, key, ds["id"], "doc", "some text")
    core.jobs.pool(0).drain()

    resp = await client.delete(f"/v1/datasets/{ds['id']}", headers=auth(key))
    assert resp.status_code == 204
    assert resp.content == b""
    assert_dify_error(await client.get(f"/v1/datasets/{ds['id']}", headers=auth(key)), 404, "not_found", NOT_FOUND)
    resp = await client.get(f"/v1/datasets/{ds['id']}/documents", headers=auth(key))
    assert_dify_error(resp, 404, "not_found", NOT_FOUND)
    assert_dify_error(await client.delete(f"/v1/datasets/{ds['id']}", headers=auth(key)), 404, "not_found", NOT_FOUND)
    assert await list_names(client, key) == ["keep"]
    assert (await get_dataset(client, key, keep["id"]))["name"] == "keep"
    # the name is free again
    assert (await create_dataset(client, key, "gone"))["id"] != ds["id"]


async def test_document_and_word_counts(client: Client, core: Core, key: str) -> None:
    ds = await create_dataset(client, key, "kb")
    text = "Otters hold hands while they sleep."
    await create_document(client, key, ds["id"], "otters", text)

    queued = await get_dataset(client, key, ds["id"])
    assert queued["document_count"] == 1 and queued["total_documents"] == 1
    assert queued["word_count"] == 0  # not indexed yet
    assert queued["total_available_documents"] == 0
    assert queued["indexing_technique"] == "high_quality"  # the first document sets it
    assert isinstance(queued["embedding_model"], str) and queued["embedding_model"]
    assert queued["doc_form"] == "text_model"

    assert core.jobs.pool(0).drain() >= 1
    got = await get_dataset(client, key, ds["id"])
    assert got["document_count"] == 1 and got["total_available_documents"] == 1
    assert got["word_count"] == len(text)  # characters, summed over the document's chunks
    assert got["data_source_type"] == "upload_file"
    assert set(got) == DATASET_KEYS

    await create_document(client, key, ds["id"], "more", "Sea otters.")
    core.jobs.pool(0).drain()
    got = await get_dataset(client, key, ds["id"])
    assert got["document_count"] == 2 and got["word_count"] == len(text) + len("Sea otters.")
    (item,) = (await get_json(client, key, "/v1/datasets"))["data"]
    assert item["document_count"] == 2 and item["word_count"] == got["word_count"]


# --- metadata (§2.5) -----------------------------------------------------------------------------------------------
async def test_metadata_create_and_list(client: Client, key: str) -> None:
    ds = await create_dataset(client, key, "kb")
    resp = await client.post(
        f"/v1/datasets/{ds['id']}/metadata", json={"type": "string", "name": "author"}, headers=auth(key)
    )
    assert resp.status_code == 201, resp.text
    author = resp.json()
    assert set(author) == {"id", "name", "type"}
    assert author["name"] == "author" and author["type"] == "string"
    uuid.UUID(author["id"])
    year = await create_field(client, key, ds["id"], "year", "number")
    when = await create_field(client, key, ds["id"], "when", "time")
    long = await create_field(client, key, ds["id"], "n" * 255)

    body = await get_json(client, key, f"/v1/datasets/{ds['id']}/metadata")
    assert body == {
        "doc_metadata": [{**f, "count": 0} for f in (author, year, when, long)],
        "built_in_field_enabled": False,
    }
    got = await get_dataset(client, key, ds["id"])
    assert sorted(got["doc_metadata"], key=lambda f: f["name"]) == sorted(
        [author, year, when, long], key=lambda f: f["name"]
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("n" * 256, "Metadata name cannot exceed 255 characters."),
        ("author", "Metadata name already exists."),
        ("document_name", "Metadata name already exists in Built-in fields."),
        ("upload_date", "Metadata name already exists in Built-in fields."),
        ("", None),
    ],
)
async def test_metadata_create_errors(client: Client, key: str, name: str, message: str | None) -> None:
    ds = await create_dataset(client, key, "kb")
    author = await create_field(client, key, ds["id"], "author")
    resp = await client.post(
        f"/v1/datasets/{ds['id']}/metadata", json={"type": "string", "name": name}, headers=auth(key)
    )
    assert_dify_error(resp, 400, "invalid_param", message)
    for body in ({"name": "other", "type": "boolean"}, {"name": "other"}):  # type: string, number or time
        resp = await client.post(f"/v1/datasets/{ds['id']}/metadata", json=body, headers=auth(key))
        assert_dify_error(resp, 400, "invalid_param")
    fields = (await get_json(client, key, f"/v1/datasets/{ds['id']}/metadata"))["doc_metadata"]
    assert fields == [{**author, "count": 0}]


async def test_metadata_names_are_per_dataset(client: Client, key: str) -> None:
    a = await create_dataset(client, key, "a")
    b = await create_dataset(client, key, "b")
    fa = await create_field(client, key, a["id"], "author")
    fb = await create_field(client, key, b["id"], "author")
    assert fa["id"] != fb["id"]


async def _doc(client: Client, core: Core, key: str, ds_id: str, name: str = "doc") -> str:
    doc = (await create_document(client, key, ds_id, name, f"text of {name}"))["document"]
    core.jobs.pool(0).drain()
    return str(doc["id"])


async def test_metadata_rename_and_delete(client: Client, core: Core, key: str) -> None:
    ds = await create_dataset(client, key, "kb")
    doc_id = await _doc(client, core, key, ds["id"])
    other_id = await _doc(client, core, key, ds["id"], "other")
    author = await create_field(client, key, ds["id"], "author")
    year = await create_field(client, key, ds["id"], "year", "number")
    resp = await set_doc_metadata(client, key, ds["id"], doc_id, [{**author, "value": "Ann"}, {**year, "value": 2024}])
    assert resp.status_code == 200 and resp.json() == {"result": "success"}
    assert await doc_metadata(client, key, ds["id"], doc_id) == {"author": "Ann", "year": 2024}
    listed = (await get_json(client, key, f"/v1/datasets/{ds['id']}/metadata"))["doc_metadata"]
    assert [(f["name"], f["count"]) for f in listed] == [("author", 1), ("year", 1)]

    # rename: the key is renamed in the documents' doc_metadata
    resp = await client.patch(
        f"/v1/datasets/{ds['id']}/metadata/{author['id']}", json={"name": "writer"}, headers=auth(key)
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id": author["id"], "name": "writer", "type": "string"}
    assert await doc_metadata(client, key, ds["id"], doc_id) == {"writer": "Ann", "year": 2024}
    body = await get_json(client, key, f"/v1/datasets/{ds['id']}/documents/{doc_id}")
    item = next(i for i in body["doc_metadata"] if i["name"] == "writer")
    assert item == {"id": author["id"], "name": "writer", "type": "string", "value": "Ann"}
    assert await doc_metadata(client, key, ds["id"], other_id) == {}

    # rename errors
    for name, message in [
        ("year", "Metadata name already exists."),
        ("source", "Metadata name already exists in Built-in fields."),
        ("n" * 256, "Metadata name cannot exceed 255 characters."),
    ]:
        resp = await client.patch(
            f"/v1/datasets/{ds['id']}/metadata/{author['id']}", json={"name": name}, headers=auth(key)
        )
        assert_dify_error(resp, 400, "invalid_param", message)
    assert await doc_metadata(client, key, ds["id"], doc_id) == {"writer": "Ann", "year": 2024}

    # delete: 204, gone from the list and from the documents
    resp = await client.delete(f"/v1/datasets/{ds['id']}/metadata/{year['id']}", headers=auth(key))
    assert resp.status_code == 204 and resp.content == b""
    listed = (await get_json(client, key, f"/v1/datasets/{ds['id']}/metadata"))["doc_metadata"]
    assert listed == [{"id": author["id"], "name": "writer", "type": "string", "count": 1}]
    assert await doc_metadata(client, key, ds["id"], doc_id) == {"writer": "Ann"}
    assert [f["name"] for f in (await get_dataset(client, key, ds["id"]))["doc_metadata"]] == ["writer"]
    resp = await client.delete(f"/v1/datasets/{ds['id']}/metadata/{year['id']}", headers=auth(key))
    assert resp.status_code in (400, 404), resp.text


async def test_built_in_fields(client: Client, core: Core, key: str) -> None:
    ds = await create_dataset(client, key, "kb")
    body = await get_json(client, key, f"/v1/datasets/{ds['id']}/metadata/built-in")
    assert body == {"fields": BUILT_INS}

    doc_id = await _doc(client, core, key, ds["id"], "report")
    author = await create_field(client, key, ds["id"], "author")
    await set_doc_metadata(client, key, ds["id"], doc_id, [{**author, "value": "Ann"}])

    resp = await client.post(f"/v1/datasets/{ds['id']}/metadata/built-in/enable", headers=auth(key))
    assert resp.status_code == 200 and resp.json() == {"result": "success"}
    listing = await get_json(client, key, f"/v1/datasets/{ds['id']}/metadata")
    assert listing["built_in_field_enabled"] is True
    assert (await get_dataset(client, key, ds["id"]))["built_in_field_enabled"] is True
    doc = await get_json(client, key, f"/v1/datasets/{ds['id']}/documents/{doc_id}")
    items = {i["name"]: i for i in doc["doc_metadata"]}
    assert set(items) == BUILT_IN_NAMES | {"author"}
    for f in BUILT_INS:
        assert items[f["name"]]["id"] == "built-in" and items[f["name"]]["type"] == f["type"]
    assert items["document_name"]["value"] == "report"
    assert items["source"]["value"] == "file_upload"
    assert isinstance(items["upload_date"]["value"], float) and isinstance(items["last_update_date"]["value"], float)
    assert items["author"]["value"] == "Ann"

    resp = await client.post(f"/v1/datasets/{ds['id']}/metadata/built-in/disable", headers=auth(key))
    assert resp.status_code == 200 and resp.json() == {"result": "success"}
    assert (await get_json(client, key, f"/v1/datasets/{ds['id']}/metadata"))["built_in_field_enabled"] is False
    assert await doc_metadata(client, key, ds["id"], doc_id) == {"author": "Ann"}


async def test_documents_metadata_replace_and_partial_update(client: Client, core: Core, key: str) -> None:
    ds = await create_dataset(client, key, "kb")
    doc_id = await _doc(client, core, key, ds["id"])
    author = await create_field(client, key, ds["id"], "author")
    year = await create_field(client, key, ds["id"], "year", "number")
    topic = await create_field(client, key, ds["id"], "topic")

    resp = await set_doc_metadata(client, key, ds["id"], doc_id, [{**author, "value": "Ann"}, {**year, "value": 2020}])
    assert resp.status_code == 200 and resp.json() == {"result": "success"}
    assert await doc_metadata(client, key, ds["id"], doc_id) == {"author": "Ann", "year": 2020}

    # partial_update merges
    resp = await set_doc_metadata(
        client, key, ds["id"], doc_id, [{**topic, "value": "otters"}, {**year, "value": 2021}], partial=True
    )
    assert resp.status_code == 200, resp.text
    assert await doc_metadata(client, key, ds["id"], doc_id) == {"author": "Ann", "year": 2021, "topic": "otters"}

    # without partial_update, the values are replaced
    resp = await set_doc_metadata(client, key, ds["id"], doc_id, [{**topic, "value": "seals"}])
    assert resp.status_code == 200, resp.text
    assert await doc_metadata(client, key, ds["id"], doc_id) == {"topic": "seals"}
    counts = {f["name"]: f["count"] for f in (await get_json(client, key, f"/v1/datasets/{ds['id']}/metadata"))[
        "doc_metadata"
    ]}  # fmt: skip
    assert counts == {"author": 0, "year": 0, "topic": 1}

    # replacing keeps the built-ins when they are enabled
    await client.post(f"/v1/datasets/{ds['id']}/metadata/built-in/enable", headers=auth(key))
    resp = await set_doc_metadata(client, key, ds["id"], doc_id, [{**author, "value": "Bo"}])
    assert resp.status_code == 200, resp.text
    assert set(await doc_metadata(client, key, ds["id"], doc_id)) == BUILT_IN_NAMES | {"author"}

    # an empty list without partial_update clears the custom values
    resp = await set_doc_metadata(client, key, ds["id"], doc_id, [])
    assert resp.status_code == 200, resp.text
    assert set(await doc_metadata(client, key, ds["id"], doc_id)) == BUILT_IN_NAMES


async def test_bad_documents_metadata_operation_changes_nothing(client: Client, core: Core, key: str) -> None:
    ds = await create_dataset(client, key, "kb")
    first = await _doc(client, core, key, ds["id"], "first")
    second = await _doc(client, core, key, ds["id"], "second")
    author = await create_field(client, key, ds["id"], "author")
    await set_doc_metadata(client, key, ds["id"], first, [{**author, "value": "Ann"}])
    await set_doc_metadata(client, key, ds["id"], second, [{**author, "value": "Bo"}])

    ops = [
        {"document_id": first, "metadata_list": [{**author, "value": "changed"}]},
        {"document_id": missing_id(), "metadata_list": [{**author, "value": "changed"}]},
        {"document_id": second, "metadata_list": [{**author, "value": "changed"}], "partial_update": True},
    ]
    resp = await client.post(
        f"/v1/datasets/{ds['id']}/documents/metadata", json={"operation_data": ops}, headers=auth(key)
    )
    assert_dify_error(resp, 400, "invalid_param", "Document not found.")
    assert await doc_metadata(client, key, ds["id"], first) == {"author": "Ann"}
    assert await doc_metadata(client, key, ds["id"], second) == {"author": "Bo"}

    # an unknown metadata id in a later operation: nothing applied either
    ops = [
        {"document_id": first, "metadata_list": [{**author, "value": "changed"}]},
        {"document_id": second, "metadata_list": [{"id": missing_id(), "name": "ghost", "value": "x"}]},
    ]
    resp = await client.post(
        f"/v1/datasets/{ds['id']}/documents/metadata", json={"operation_data": ops}, headers=auth(key)
    )
    assert_dify_error(resp, 400, "invalid_param")
    assert await doc_metadata(client, key, ds["id"], first) == {"author": "Ann"}
    assert await doc_metadata(client, key, ds["id"], second) == {"author": "Bo"}


async def test_metadata_routes_on_missing_dataset(client: Client, key: str) -> None:
    gone = missing_id()
    for method, path, body in [
        ("GET", f"/v1/datasets/{gone}/metadata", None),
        ("POST", f"/v1/datasets/{gone}/metadata", {"name": "a", "type": "string"}),
        ("GET", f"/v1/datasets/{gone}/metadata/built-in", None),
        ("POST", f"/v1/datasets/{gone}/metadata/built-in/enable", None),
        ("POST", f"/v1/datasets/{gone}/documents/metadata", {"operation_data": []}),
    ]:
        resp = await client.request(method, path, json=body, headers=auth(key))
        assert_dify_error(resp, 404, "not_found", NOT_FOUND)


# --- tags (§2.6) ---------------------------------------------------------------------------------------------------
async def test_tags_crud(client: Client, key: str) -> None:
    assert await get_json(client, key, "/v1/datasets/tags") == []

    resp = await client.post("/v1/datasets/tags", json={"name": "finance"}, headers=auth(key))
    assert resp.status_code == 200, resp.text
    finance = resp.json()
    assert set(finance) == {"id", "name", "type", "binding_count"}
    assert finance["name"] == "finance" and finance["type"] == "knowledge" and finance["binding_count"] == "0"
    uuid.UUID(finance["id"])
    legal = await create_tag(client, key, "legal")

    listed = await get_json(client, key, "/v1/datasets/tags")
    assert isinstance(listed, list)
    assert sorted(listed, key=lambda t: t["name"]) == [finance, legal]

    for name in ("finance", "", "x" * 51):
        resp = await client.post("/v1/datasets/tags", json={"name": name}, headers=auth(key))
        assert_dify_error(resp, 400, "invalid_param", "Tag name already exists" if name == "finance" else None)
    assert (await create_tag(client, key, "y" * 50))["name"] == "y" * 50

    resp = await client.patch("/v1/datasets/tags", json={"tag_id": finance["id"], "name": "money"}, headers=auth(key))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id": finance["id"], "name": "money", "type": "knowledge", "binding_count": "0"}
    resp = await client.patch("/v1/datasets/tags", json={"tag_id": legal["id"], "name": "money"}, headers=auth(key))
    assert_dify_error(resp, 400, "invalid_param", "Tag name already exists")
    resp = await client.patch("/v1/datasets/tags", json={"tag_id": missing_id(), "name": "z"}, headers=auth(key))
    assert_dify_error(resp, 404, "not_found", "Tag not found")

    resp = await client.request("DELETE", "/v1/datasets/tags", json={"tag_id": legal["id"]}, headers=auth(key))
    assert resp.status_code == 204 and resp.content == b""
    assert set(await tags_by_name(client, key)) == {"money", "y" * 50}
    resp = await client.request("DELETE", "/v1/datasets/tags", json={"tag_id": legal["id"]}, headers=auth(key))
    assert_dify_error(resp, 404, "not_found")


async def test_tag_binding_and_unbinding(client: Client, key: str) -> None:
    a = await create_dataset(client, key, "a")
    b = await create_dataset(client, key, "b")
    red, blue = await create_tag(client, key, "red"), await create_tag(client, key, "blue")

    await bind(client, key, a["id"], [red["id"], blue["id"], missing_id()])  # unknown ids are ignored
    await bind(client, key, b["id"], [red["id"]])
    await bind(client, key, b["id"], [red["id"]])  # binding twice is no second binding
    tags = await tags_by_name(client, key)
    assert tags["red"]["binding_count"] == "2" and tags["blue"]["binding_count"] == "1"

    body = await get_json(client, key, f"/v1/datasets/{a['id']}/tags")
    assert set(body) == {"data", "total"} and body["total"] == 2
    assert sorted(body["data"], key=lambda t: t["name"]) == [
        {"id": blue["id"], "name": "blue"},
        {"id": red["id"], "name": "red"},
    ]
    got = await get_dataset(client, key, a["id"])
    assert sorted(got["tags"], key=lambda t: t["name"]) == [
        {"id": blue["id"], "name": "blue", "type": "knowledge"},
        {"id": red["id"], "name": "red", "type": "knowledge"},
    ]
    listed = {d["name"]: d for d in (await get_json(client, key, "/v1/datasets"))["data"]}
    assert listed["b"]["tags"] == [{"id": red["id"], "name": "red", "type": "knowledge"}]
    resp = await client.patch("/v1/datasets/tags", json={"tag_id": red["id"], "name": "crimson"}, headers=auth(key))
    assert resp.json()["binding_count"] == "2"

    # unbinding: tag_ids, or the legacy single tag_id
    resp = await client.post(
        "/v1/datasets/tags/unbinding",
        json={"tag_ids": [blue["id"], missing_id()], "target_id": a["id"]},
        headers=auth(key),
    )
    assert resp.status_code == 204 and resp.content == b""
    resp = await client.post(
        "/v1/datasets/tags/unbinding", json={"tag_id": red["id"], "target_id": b["id"]}, headers=auth(key)
    )
    assert resp.status_code == 204 and resp.content == b""
    assert (await get_json(client, key, f"/v1/datasets/{a['id']}/tags"))["data"] == [
        {"id": red["id"], "name": "crimson"}
    ]
    assert await get_json(client, key, f"/v1/datasets/{b['id']}/tags") == {"data": [], "total": 0}
    tags = await tags_by_name(client, key)
    assert tags["crimson"]["binding_count"] == "1" and tags["blue"]["binding_count"] == "0"

    # deleting a tag unbinds it everywhere
    resp = await client.request("DELETE", "/v1/datasets/tags", json={"tag_id": red["id"]}, headers=auth(key))
    assert resp.status_code == 204
    assert (await get_dataset(client, key, a["id"]))["tags"] == []
    assert await list_names(client, key, tag_ids=red["id"]) == []


async def test_tag_binding_errors(client: Client, key: str) -> None:
    ds = await create_dataset(client, key, "kb")
    tag = await create_tag(client, key, "t")
    resp = await client.post(
        "/v1/datasets/tags/binding", json={"tag_ids": [tag["id"]], "target_id": missing_id()}, headers=auth(key)
    )
    assert_dify_error(resp, 404, "not_found", NOT_FOUND)
    resp = await client.post(
        "/v1/datasets/tags/unbinding", json={"tag_ids": [tag["id"]], "target_id": missing_id()}, headers=auth(key)
    )
    assert_dify_error(resp, 404, "not_found", NOT_FOUND)
    for body in [{"tag_ids": [], "target_id": ds["id"]}, {"target_id": ds["id"]}, {"tag_ids": [tag["id"]]}]:
        resp = await client.post("/v1/datasets/tags/binding", json=body, headers=auth(key))
        assert_dify_error(resp, 400, "invalid_param")
    assert (await tags_by_name(client, key))["t"]["binding_count"] == "0"
    resp = await client.get(f"/v1/datasets/{missing_id()}/tags", headers=auth(key))
    assert_dify_error(resp, 404, "not_found", NOT_FOUND)


async def test_deleting_a_dataset_drops_its_bindings(client: Client, key: str) -> None:
    ds = await create_dataset(client, key, "kb")
    tag = await create_tag(client, key, "t")
    await bind(client, key, ds["id"], [tag["id"]])
    assert (await tags_by_name(client, key))["t"]["binding_count"] == "1"
    assert (await client.delete(f"/v1/datasets/{ds['id']}", headers=auth(key))).status_code == 204
    assert (await tags_by_name(client, key))["t"]["binding_count"] == "0"
