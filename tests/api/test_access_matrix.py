"""The access matrix: every route of the app, with every kind of key, against a data source, space or workspace the
key must not reach (services/access.py). Generated from the route table: every route must be classified in
``ROUTES`` (a new route fails ``test_every_route_is_classified`` until it is), and joins the matrix by its class.

Each refused request must answer the dialect's exact status and error code, a listing must not reveal what the key
cannot reach, and no request may change stored data (the whole database is compared before and after each one).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from alexandria.api.app import create_app
from alexandria.api.doors import door_of
from alexandria.config import Settings
from alexandria.domain.models import DataSource, Role, Space, Workspace
from alexandria.services.core import Core
from tests.api.dify_helpers import dify  # noqa: F401  (a pytest fixture)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dify")]


# --- the route table, classified ---------------------------------------------------------------------------------
# Dust: DS (one data source, by space or legacy path), SPACE (one space's listing), VIEW (one view), LIST (the
# workspace's listings), VIEWS_SEARCH (system keys only), QUERY (SQL naming tables in its body).
# Dify: DATASET (one dataset, in the path or the body), TENANT_LIST (lists about no dataset), TENANT_WRITE (creates
# in the key's own workspace), TAG (a workspace tag by id). PUBLIC: no key (signed URL, docs, health).
DS, SPACE, VIEW, LIST, VIEWS_SEARCH, QUERY = "ds", "space", "view", "list", "views_search", "query"
DATASET, TENANT_LIST, TENANT_WRITE, TAG, PUBLIC = "dataset", "tenant_list", "tenant_write", "tag", "public"
# OpenAI: VSTORE (one vector store), OAI_FILE (one file of the Files API), OAI_LIST (the lists of stores and files),
# OAI_CREATE (create a vector store: not with a bound key), OAI_UPLOAD (upload a file: any key that may use the API).
VSTORE, OAI_FILE, OAI_LIST, OAI_CREATE, OAI_UPLOAD = "vstore", "oai_file", "oai_list", "oai_create", "oai_upload"

W = "/api/v1/w/{wId}"
S = W + "/spaces/{spaceId}"
D = "/v1/datasets/{dataset_id}"
_DS_SUFFIXES = [
    ("POST", "/documents/{documentId:path}/parents"),
    ("GET", "/documents/{documentId:path}"),
    ("POST", "/documents/{documentId:path}"),
    ("DELETE", "/documents/{documentId:path}"),
    ("GET", "/documents"),
    ("GET", "/search"),
    ("GET", "/check_upsert_queue"),
    ("POST", "/tables/csv"),
    ("GET", "/tables"),
    ("POST", "/tables"),
    ("POST", "/tables/{tId}/parents"),
    ("GET", "/tables/{tId}/rows"),
    ("POST", "/tables/{tId}/rows"),
    ("GET", "/tables/{tId}/rows/{rId:path}"),
    ("DELETE", "/tables/{tId}/rows/{rId:path}"),
    ("GET", "/tables/{tId}"),
    ("DELETE", "/tables/{tId}"),
    ("POST", "/folders/{folderId:path}"),
    ("GET", "/folders/{folderId:path}"),
    ("DELETE", "/folders/{folderId:path}"),
    ("GET", "/folders"),
    ("POST", "/tokenize"),
]
VS = "/v1/vector_stores/{vector_store_id}"
_OPENAI_ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/v1/files"): OAI_UPLOAD,
    ("GET", "/v1/files"): OAI_LIST,
    ("GET", "/v1/files/{file_id}"): OAI_FILE,
    ("DELETE", "/v1/files/{file_id}"): OAI_FILE,
    ("GET", "/v1/files/{file_id}/content"): OAI_FILE,
    ("POST", "/v1/vector_stores"): OAI_CREATE,
    ("GET", "/v1/vector_stores"): OAI_LIST,
    ("GET", VS): VSTORE,
    ("POST", VS): VSTORE,
    ("DELETE", VS): VSTORE,
    ("POST", VS + "/search"): VSTORE,
    ("POST", VS + "/files"): VSTORE,
    ("GET", VS + "/files"): VSTORE,
    ("GET", VS + "/files/{file_id}"): VSTORE,
    ("POST", VS + "/files/{file_id}"): VSTORE,
    ("DELETE", VS + "/files/{file_id}"): VSTORE,
    ("GET", VS + "/files/{file_id}/content"): VSTORE,
    ("POST", VS + "/file_batches"): VSTORE,
    ("GET", VS + "/file_batches/{batch_id}"): VSTORE,
    ("POST", VS + "/file_batches/{batch_id}/cancel"): VSTORE,
    ("GET", VS + "/file_batches/{batch_id}/files"): VSTORE,
}
ROUTES: dict[tuple[str, str], str] = {
    **_OPENAI_ROUTES,
    **{(m, f"{prefix}/data_sources/{{dsId}}{suffix}"): DS for m, suffix in _DS_SUFFIXES for prefix in (S, W)},
    ("GET", W + "/spaces"): LIST,
    ("GET", W + "/vaults"): LIST,
    ("GET", W + "/data_sources"): LIST,
    ("GET", S + "/data_sources"): SPACE,
    ("GET", S + "/data_source_views"): SPACE,
    ("GET", S + "/data_source_views/{dsvId}"): VIEW,
    ("PATCH", S + "/data_source_views/{dsvId}"): VIEW,
    ("GET", S + "/data_source_views/{dsvId}/search"): VIEW,
    ("GET", W + "/data_source_views/search"): VIEWS_SEARCH,
    ("POST", W + "/query_tables"): QUERY,
    ("GET", "/v1/datasets/tags"): TENANT_LIST,
    ("POST", "/v1/datasets/tags"): TENANT_WRITE,
    ("PATCH", "/v1/datasets/tags"): TAG,
    ("DELETE", "/v1/datasets/tags"): TAG,
    ("POST", "/v1/datasets/tags/binding"): DATASET,
    ("POST", "/v1/datasets/tags/unbinding"): DATASET,
    ("POST", "/v1/datasets"): TENANT_WRITE,
    ("GET", "/v1/datasets"): TENANT_LIST,
    ("GET", "/v1/workspaces/current/models/model-types/{model_type}"): TENANT_LIST,
    ("GET", D): DATASET,
    ("PATCH", D): DATASET,
    ("DELETE", D): DATASET,
    ("GET", D + "/tags"): DATASET,
    ("POST", D + "/metadata"): DATASET,
    ("GET", D + "/metadata"): DATASET,
    ("GET", D + "/metadata/built-in"): DATASET,
    ("POST", D + "/metadata/built-in/{action}"): DATASET,
    ("PATCH", D + "/metadata/{metadata_id}"): DATASET,
    ("DELETE", D + "/metadata/{metadata_id}"): DATASET,
    ("POST", D + "/documents/metadata"): DATASET,
    ("POST", D + "/document/create-by-text"): DATASET,
    ("POST", D + "/document/create_by_text"): DATASET,
    ("POST", D + "/documents/{document_id}/update-by-text"): DATASET,
    ("POST", D + "/documents/{document_id}/update_by_text"): DATASET,
    ("POST", D + "/document/create-by-file"): DATASET,
    ("POST", D + "/document/create_by_file"): DATASET,
    ("POST", D + "/documents/{document_id}/update-by-file"): DATASET,
    ("POST", D + "/documents/{document_id}/update_by_file"): DATASET,
    ("PATCH", D + "/documents/{document_id}"): DATASET,
    ("GET", D + "/documents"): DATASET,
    ("GET", D + "/documents/{batch}/indexing-status"): DATASET,
    ("GET", D + "/documents/{document_id}"): DATASET,
    ("DELETE", D + "/documents/{document_id}"): DATASET,
    ("PATCH", D + "/documents/status/{action}"): DATASET,
    ("POST", D + "/documents/{document_id}/segments"): DATASET,
    ("GET", D + "/documents/{document_id}/segments"): DATASET,
    ("GET", D + "/documents/{document_id}/segments/{segment_id}"): DATASET,
    ("POST", D + "/documents/{document_id}/segments/{segment_id}"): DATASET,
    ("DELETE", D + "/documents/{document_id}/segments/{segment_id}"): DATASET,
    ("POST", D + "/documents/{document_id}/segments/{segment_id}/child_chunks"): DATASET,
    ("GET", D + "/documents/{document_id}/segments/{segment_id}/child_chunks"): DATASET,
    ("PATCH", D + "/documents/{document_id}/segments/{segment_id}/child_chunks/{child_id}"): DATASET,
    ("DELETE", D + "/documents/{document_id}/segments/{segment_id}/child_chunks/{child_id}"): DATASET,
    ("POST", D + "/retrieve"): DATASET,
    ("POST", D + "/hit-testing"): DATASET,
    ("GET", D + "/documents/{document_id}/download"): DATASET,
    ("GET", D + "/documents/{document_id}/upload-file"): DATASET,
    ("POST", D + "/documents/download-zip"): DATASET,
    ("GET", D + "/pipeline/datasource-plugins"): DATASET,
    ("POST", D + "/pipeline/datasource/nodes/{node_id}/run"): DATASET,
    ("POST", D + "/pipeline/run"): DATASET,
    ("POST", "/v1/datasets/pipeline/file-upload"): TENANT_WRITE,
    ("GET", "/v1/files/{file_id}/file-download"): PUBLIC,  # a signed URL is its own credential
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
}


def route_table(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route the app serves (HEAD aside), included routers flattened."""
    routes: Iterable[Any]
    try:
        from fastapi.routing import iter_route_contexts  # newer FastAPI keeps included routers nested
    except ImportError:
        routes = app.routes
    else:
        routes = iter_route_contexts(app.routes)
    for route in routes:
        path = getattr(route, "path", None)
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD" and path is not None:
                yield method, path


def test_every_route_is_classified(tmp_path: Any) -> None:
    served = set(route_table(create_app(Settings(data_dir=tmp_path / "data"))))
    assert not served - set(ROUTES), f"classify these routes in ROUTES: {sorted(served - set(ROUTES))}"
    assert not set(ROUTES) - served, f"routes no longer served: {sorted(set(ROUTES) - served)}"


# --- the world ---------------------------------------------------------------------------------------------------
@dataclass
class Target:
    """A data source and everything in it that some key must not reach (by sIds, names and ids)."""

    mark: str  # in the names, ids and texts of everything in the target (and nowhere else)
    ws: Workspace
    space: Space
    ds: DataSource
    view: str = ""
    dify_doc: str = ""
    batch: str = ""
    segment: str = ""
    metadata_id: str = ""
    tag: str = ""
    openai_file: str = ""
    openai_batch: str = ""
    params: dict[str, str] = field(default_factory=dict)

    def fill(self, path: str) -> str:
        mark = self.mark
        values = {
            "wId": self.ws.sid, "spaceId": self.space.sid, "dsId": self.ds.sid, "documentId": f"{mark}-doc",
            "folderId": f"{mark}-folder", "tId": f"{mark}_table", "rId": "r1", "dsvId": self.view,
            "dataset_id": self.ds.uuid, "document_id": self.dify_doc, "batch": self.batch, "segment_id": self.segment,
            "child_id": str(uuid.uuid4()), "metadata_id": self.metadata_id, "action": "enable",
            "model_type": "text-embedding", "node_id": "node-1", "vector_store_id": f"vs_{self.ds.uuid}",
            "file_id": self.openai_file, "batch_id": self.openai_batch,
        }  # fmt: skip
        for name, value in values.items():
            path = path.replace("{" + name + ":path}", value).replace("{" + name + "}", value)
        assert "{" not in path, path
        return path


@dataclass
class KeyKind:
    """A kind of key, the target it must not reach, and whether the target's space is out of its sight."""

    name: str
    secret: str
    workspace: Workspace
    target: Target
    space_hidden: bool
    headers: dict[str, str] = field(default_factory=dict)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def ok(resp: httpx.Response) -> Any:
    assert resp.status_code in (200, 201, 204), resp.text
    return resp.json() if resp.content else None


async def populate(client: httpx.AsyncClient, core: Core, space: Space, name: str) -> Target:
    """A data source ``name`` in ``space`` with a document, a folder, a table with a row, a Dify document with
    segments, a metadata field and a bound tag, all marked with ``name``."""
    ws = core.catalog.workspace_by_id(space.workspace_id)
    assert ws is not None
    ds = core.catalog.create_data_source(ws, name, space=space, embedder="fake")
    mark = name
    _, system = core.keys.create(ws, Role.SYSTEM)
    h = auth(system)
    base = f"/api/v1/w/{ws.sid}/spaces/{space.sid}/data_sources/{ds.sid}"
    await ok(await client.post(f"{base}/documents/{mark}-doc", json={"text": f"{mark} text", "title": mark}, headers=h))
    folder = {"timestamp": 1, "title": f"{mark} folder", "mime_type": "application/vnd.dust.folder"}
    await ok(await client.post(f"{base}/folders/{mark}-folder", json=folder, headers=h))
    table = {"name": f"{mark}_table", "table_id": f"{mark}_table", "description": mark, "title": mark,
             "mime_type": "text/csv"}  # fmt: skip
    await ok(await client.post(f"{base}/tables", json=table, headers=h))
    rows = {"rows": [{"row_id": "r1", "value": {"word": mark}}]}
    await ok(await client.post(f"{base}/tables/{mark}_table/rows", json=rows, headers=h))
    d = f"/v1/datasets/{ds.uuid}"
    doc = {"name": f"{mark} dify", "text": f"{mark} dify text", "indexing_technique": "high_quality",
           "process_rule": {"mode": "automatic"}}  # fmt: skip
    created = await ok(await client.post(f"{d}/document/create-by-text", json=doc, headers=h))
    core.jobs.pool(0).drain()
    dify_doc = created["document"]["id"]
    segments = await ok(await client.get(f"{d}/documents/{dify_doc}/segments", headers=h))
    field_ = await ok(await client.post(f"{d}/metadata", json={"type": "string", "name": mark}, headers=h))
    tag = await ok(await client.post("/v1/datasets/tags", json={"name": f"tag of {space.name}"}, headers=h))
    binding = {"tag_ids": [tag["id"]], "target_id": ds.uuid}
    await ok(await client.post("/v1/datasets/tags/binding", json=binding, headers=h))
    view = next(v for v in core.spaces.views(ws, space) if v.data_source_id == ds.id)
    upload = await client.post("/v1/files", files={"file": (f"{mark}.txt", f"{mark} file".encode())},
                               data={"purpose": "assistants"}, headers=h)  # fmt: skip
    file_id = (await ok(upload))["id"]
    batch = await client.post(f"/v1/vector_stores/vs_{ds.uuid}/file_batches", json={"file_ids": [file_id]}, headers=h)
    batch_id = (await ok(batch))["id"]
    core.jobs.pool(0).drain()
    return Target(
        name, ws, space, ds, view.sid, dify_doc, created["batch"], segments["data"][0]["id"], field_["id"], tag["id"],
        file_id, batch_id,
    )  # fmt: skip


@pytest.fixture
async def kinds(client: httpx.AsyncClient, core: Core) -> list[KeyKind]:
    w1, global1 = core.catalog.ensure_workspace("w1")
    w2, global2 = core.catalog.ensure_workspace("w2")
    for group in ("g1", "g2"):
        core.spaces.create_group(w1, group)
    r1 = core.spaces.create_space(w1, "R1", restricted=True, groups=["g1"])
    r2 = core.spaces.create_space(w1, "R2", restricted=True, groups=["g2"])
    a = core.catalog.create_data_source(w1, "notes-a", embedder="fake")
    core.catalog.create_data_source(w1, "notes-c", space=r1, embedder="fake")
    target_b = await populate(client, core, global1, "zebrab")
    target_d = await populate(client, core, r2, "zebrad")
    target_e = await populate(client, core, global2, "zebrae")

    _, admin = core.keys.create(w1, Role.ADMIN)
    _, builder = core.keys.create(w1, Role.BUILDER)
    _, user = core.keys.create(w1, Role.USER)
    _, bound = core.keys.create(w1, Role.BUILDER, data_source_id=a.id)
    _, other = core.keys.create(w2, Role.BUILDER)
    member, member_secret = core.keys.create(w1, Role.BUILDER)
    core.spaces.add_key(w1, "g1", member)
    _, system = core.keys.create(w1, Role.SYSTEM)
    g1 = core.spaces.group(w1, "g1").sid
    return [
        KeyKind("admin", admin, w1, target_e, True),
        KeyKind("builder", builder, w1, target_d, True),
        KeyKind("user", user, w1, target_b, False),
        KeyKind("bound_to_a", bound, w1, target_b, False),
        KeyKind("other_workspace", other, w2, target_b, False),
        KeyKind("group_g1", member_secret, w1, target_d, True),
        # a system key acting with group g1 only (Dust's X-Dust-Group-Ids; Dify has no such header)
        KeyKind("system_as_g1", system, w1, target_d, True, {"X-Dust-Group-Ids": g1}),
    ]


# --- what each kind of key must get ------------------------------------------------------------------------------
LISTING = (200, "")


def expected(kind: KeyKind, route_class: str, path: str) -> tuple[int, str] | None:
    """(status, error type or code) the request must get, LISTING (200 revealing nothing) or None (not a request
    about something out of the key's scope: not sent)."""
    foreign = kind.target.ws.id != kind.workspace.id
    if door_of(path) == "openai":
        return expected_openai(kind, route_class)
    if path.startswith("/api/"):  # Dust
        if foreign or kind.name == "user":
            return 401, "workspace_auth_error"
        if route_class == DS:
            in_space = "{spaceId}" in path
            return (404, "space_not_found") if in_space and kind.space_hidden else (404, "data_source_not_found")
        if route_class == SPACE:
            return (404, "space_not_found") if kind.space_hidden else LISTING
        if route_class == VIEW:
            return (404, "space_not_found") if kind.space_hidden else (404, "data_source_view_not_found")
        if route_class == VIEWS_SEARCH:  # system keys only
            return LISTING if kind.name == "system_as_g1" else (404, "data_source_view_not_found")
        if route_class == QUERY:
            return 404, "data_source_not_found"
        assert route_class == LIST
        return LISTING
    if kind.name == "system_as_g1":
        return None  # on Dify a system key acts with every group
    bound_or_user = kind.name in ("bound_to_a", "user")
    if kind.name == "user":
        return 403, "forbidden"
    if route_class == DATASET:
        return (404, "not_found") if foreign else (403, "forbidden")
    if route_class == TENANT_LIST:
        return (403, "forbidden") if bound_or_user else LISTING
    if route_class == TENANT_WRITE:
        return (403, "forbidden") if bound_or_user else None
    assert route_class == TAG
    if bound_or_user:
        return 403, "forbidden"
    return (404, "not_found") if foreign else None  # a tag of another workspace does not exist for the key


def expected_openai(kind: KeyKind, route_class: str) -> tuple[int, str] | None:
    """OpenAI's door: what the key cannot reach does not exist for it (404); a role that may not use the API, or a
    bound key creating a store, is refused (403)."""
    if kind.name == "system_as_g1":
        return None  # no group narrowing on this door: a system key acts with every group
    if kind.name == "user":
        return 403, "insufficient_permissions"
    if route_class == VSTORE:
        return 404, "not_found"
    if route_class == OAI_FILE:
        return 404, "file_not_found"
    if route_class == OAI_LIST:
        return LISTING
    if route_class == OAI_CREATE:
        return (403, "insufficient_permissions") if kind.name == "bound_to_a" else None
    assert route_class == OAI_UPLOAD
    return None  # an upload lands in the key's own scope


def body_for(method: str, path: str, t: Target) -> dict[str, Any] | None:
    """A body that would write into the target if the key's scope were not enforced."""
    mark = t.mark
    if method not in ("POST", "PATCH", "DELETE"):
        return None
    bodies: list[tuple[str, dict[str, Any]]] = [
        (VS + "/files", {"file_id": t.openai_file, "attributes": {"leak": 1}}),
        (VS + "/files/{file_id}", {"attributes": {"leak": 1}}),
        (VS + "/file_batches", {"file_ids": [t.openai_file]}),
        (VS + "/search", {"query": mark}),
        (VS, {"name": "leak", "metadata": {"leak": "1"}}),
        ("/v1/vector_stores", {"name": "leak"}),
        ("/parents", {"parents": [f"{mark}-doc", "p"], "parent_id": "p"}),
        ("/documents/{documentId:path}", {"text": "leaked"}),
        ("/tables/csv", {"name": "leak", "description": "d", "csv": "a\n1"}),
        ("/rows", {"rows": [{"row_id": "r2", "value": {"word": "leak"}}]}),
        ("/tables", {"name": "leak", "description": "d", "title": "leak"}),
        ("/folders/{folderId:path}", {"timestamp": 2, "title": "leak", "mime_type": "x"}),
        ("/tokenize", {"text": "hello"}),
        ("/data_source_views/{dsvId}", {"parentsIn": []}),
        ("/query_tables", {"query": "SELECT 1", "tables": [{"data_source_id": t.ds.sid, "table_id": f"{mark}_table"}]}),
        ("/tags/binding", {"tag_ids": [t.tag], "target_id": t.ds.uuid}),
        ("/tags/unbinding", {"tag_ids": [t.tag], "target_id": t.ds.uuid}),
        ("/v1/datasets/tags", {"tag_id": t.tag, "name": "leak"}),
        ("create-by-text", {"name": "leak", "text": "leak", "indexing_technique": "high_quality"}),
        ("create_by_text", {"name": "leak", "text": "leak", "indexing_technique": "high_quality"}),
        ("update-by-text", {"name": "leak", "text": "leak"}),
        ("update_by_text", {"name": "leak", "text": "leak"}),
        ("/segments", {"segments": [{"content": "leak"}]}),
        ("/child_chunks", {"content": "leak"}),
        ("/metadata", {"type": "string", "name": "leak"}),
        ("/documents/metadata", {"operation_data": [{"document_id": t.dify_doc, "metadata_list": []}]}),
        ("/documents/status/{action}", {"document_ids": [t.dify_doc]}),
        ("/download-zip", {"document_ids": [t.dify_doc]}),
        ("/retrieve", {"query": mark}),
        ("/hit-testing", {"query": mark}),
        ("/v1/datasets", {"name": "leak"}),
        ("{segment_id}", {"segment": {"content": "leak"}}),
        ("{metadata_id}", {"name": "leak"}),
        ("{dataset_id}", {"name": "leak"}),
    ]
    return next((b for suffix, b in bodies if path.endswith(suffix)), {})


class StoreWatch:
    """Tells whether the store's content changed: the whole embedded SQLite database is dumped again only when
    another connection committed (``PRAGMA data_version``), and compared with the last dump."""

    def __init__(self, settings: Settings) -> None:
        self.db = sqlite3.connect(settings.data_dir / "alexandria.db")
        self.version = self._version()
        self.dump = list(self.db.iterdump())

    def _version(self) -> int:
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def changed(self) -> bool:
        version = self._version()
        if version == self.version:
            return False
        self.version = version
        dump = list(self.db.iterdump())
        changed, self.dump = dump != self.dump, dump
        return changed

    def close(self) -> None:
        self.db.close()


async def test_no_key_reaches_what_its_scope_excludes(
    client: httpx.AsyncClient, core: Core, settings: Settings, kinds: list[KeyKind]
) -> None:
    app = create_app(settings, core)
    # deletions last (the dataset's own last), so that a leaking one cannot hide the leaks of the others
    routes = sorted(route_table(app), key=lambda r: (r[0] == "DELETE", r[1] == D, r))
    failures: list[str] = []
    sent = 0
    watch = StoreWatch(settings)
    for kind in kinds:
        t = kind.target
        secrets = {t.ds.sid, t.ds.uuid, t.mark} | ({t.space.sid} if kind.space_hidden else set())
        for method, template in routes:
            route_class = ROUTES[(method, template)]
            if route_class == PUBLIC:
                continue
            want = expected(kind, route_class, template)
            if want is None:
                continue
            path = t.fill(template)
            query = {"query": t.mark, "top_k": "3"} if path.endswith("/search") else None
            resp = await client.request(
                method,
                path,
                params=query,
                json=body_for(method, template, t),
                headers={**auth(kind.secret), **kind.headers},
            )
            sent += 1
            where = f"{kind.name}: {method} {template}"
            if watch.changed():
                failures.append(f"{where}: stored data changed ({resp.status_code})")
            if want == LISTING:
                if resp.status_code != 200 or any(s in resp.text for s in secrets):
                    failures.append(f"{where}: {resp.status_code} reveals what the key cannot reach: {resp.text}")
                continue
            status, code = want
            body = resp.json() if resp.headers.get("content-type") == "application/json" else {}
            if door_of(template) == "openai":
                got = body.get("error", {}).get("code")
                envelope_ok = set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
            elif template.startswith("/api/"):
                got = body.get("error", {}).get("type")
                envelope_ok = set(body) == {"error"}
            else:
                got = body.get("code")
                envelope_ok = set(body) == {"code", "message", "status"}
            if resp.status_code != status or got != code or not envelope_ok:
                failures.append(f"{where}: want {status} {code}, got {resp.status_code} {resp.text}")
    watch.close()
    assert sent > 400
    assert not failures, "\n".join(failures)


async def test_the_targets_exist(client: httpx.AsyncClient, core: Core, kinds: list[KeyKind]) -> None:
    """The control: with a system key of its workspace, every GET about a target passes the access checks (so the
    refusals above are about scope, not about ids that do not exist)."""
    refusals = {"space_not_found", "data_source_not_found", "data_source_view_not_found", "workspace_auth_error"}
    app = create_app(Settings(data_dir=core.settings.data_dir), core)
    for target in {id(k.target): k.target for k in kinds}.values():
        _, system = core.keys.create(target.ws, Role.SYSTEM)
        for method, template in sorted(route_table(app)):
            if method != "GET" or ROUTES[(method, template)] in (PUBLIC, LIST, TENANT_LIST, VIEWS_SEARCH):
                continue
            resp = await client.get(target.fill(template), params={"query": "x", "top_k": "1"}, headers=auth(system))
            if door_of(template) == "openai":
                assert resp.status_code == 200, (template, resp.text)
                continue
            body = resp.json()
            assert not (isinstance(body.get("error"), dict) and body["error"]["type"] in refusals), (template, body)
            assert body.get("message") != "Dataset not found." and body.get("code") != "forbidden", (template, body)
