"""Conformance scenario for the PyPI client ``dify-oapi2`` (pinned in requirements-dify-oapi2.txt) against a live
Alexandria server's Dify Knowledge API. Runs inside the client's own venv (see tests/conformance/test_dify_client.py).

Environment: ALEX_BASE_URL (server root, no /v1: the client's URIs start with /v1), ALEX_DIFY_KEY (a workspace key),
DIFY_INDEX_TIMEOUT (seconds to wait for indexing, default 120).

Every response is parsed by the client itself into its own pydantic models (``client.knowledge.v1.*``); the checks
then look at the parsed values. Where the client's model contradicts Dify (see CLIENT_BUGS), the call still goes
through the client's request builder and transport and the answer is parsed with the client's own element model in
the shape Dify answers; the check says so in its context (``client_workaround``). One bug is patched in the client's
models at start-up instead (``doc_metadata``, see :func:`patch_doc_metadata`), so that every document response is still
parsed by the client's own response models.
"""

from __future__ import annotations

import graphlib
import importlib
import io
import json
import os
import pkgutil
import re
import time
import typing
import uuid
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, ClassVar

import dify_oapi
import httpx
import scenario_common as sc
from dify_oapi.api.knowledge.v1.model.batch_info import BatchInfo
from dify_oapi.api.knowledge.v1.model.bind_tags_to_dataset_request import BindTagsToDatasetRequest
from dify_oapi.api.knowledge.v1.model.bind_tags_to_dataset_request_body import BindTagsToDatasetRequestBody
from dify_oapi.api.knowledge.v1.model.child_chunk_info import ChildChunkInfo
from dify_oapi.api.knowledge.v1.model.create_child_chunk_request import CreateChildChunkRequest
from dify_oapi.api.knowledge.v1.model.create_child_chunk_request_body import ChunkContent, CreateChildChunkRequestBody
from dify_oapi.api.knowledge.v1.model.create_dataset_request import CreateDatasetRequest
from dify_oapi.api.knowledge.v1.model.create_dataset_request_body import CreateDatasetRequestBody
from dify_oapi.api.knowledge.v1.model.create_document_by_file_request import CreateDocumentByFileRequest
from dify_oapi.api.knowledge.v1.model.create_document_by_file_request_body import CreateDocumentByFileRequestBody
from dify_oapi.api.knowledge.v1.model.create_document_by_file_request_body_data import (
    CreateDocumentByFileRequestBodyData,
)
from dify_oapi.api.knowledge.v1.model.create_document_by_text_request import CreateDocumentByTextRequest
from dify_oapi.api.knowledge.v1.model.create_document_by_text_request_body import CreateDocumentByTextRequestBody
from dify_oapi.api.knowledge.v1.model.create_segment_request import CreateSegmentRequest
from dify_oapi.api.knowledge.v1.model.create_segment_request_body import CreateSegmentRequestBody
from dify_oapi.api.knowledge.v1.model.create_tag_request import CreateTagRequest
from dify_oapi.api.knowledge.v1.model.create_tag_request_body import CreateTagRequestBody
from dify_oapi.api.knowledge.v1.model.delete_child_chunk_request import DeleteChildChunkRequest
from dify_oapi.api.knowledge.v1.model.delete_dataset_request import DeleteDatasetRequest
from dify_oapi.api.knowledge.v1.model.delete_document_request import DeleteDocumentRequest
from dify_oapi.api.knowledge.v1.model.delete_segment_request import DeleteSegmentRequest
from dify_oapi.api.knowledge.v1.model.delete_tag_request import DeleteTagRequest
from dify_oapi.api.knowledge.v1.model.delete_tag_request_body import DeleteTagRequestBody
from dify_oapi.api.knowledge.v1.model.document_info import DocumentInfo
from dify_oapi.api.knowledge.v1.model.document_metadata import DocumentMetadata
from dify_oapi.api.knowledge.v1.model.get_batch_indexing_status_request import GetBatchIndexingStatusRequest
from dify_oapi.api.knowledge.v1.model.get_dataset_request import GetDatasetRequest
from dify_oapi.api.knowledge.v1.model.get_dataset_tags_request import GetDatasetTagsRequest
from dify_oapi.api.knowledge.v1.model.get_document_request import GetDocumentRequest
from dify_oapi.api.knowledge.v1.model.get_segment_request import GetSegmentRequest
from dify_oapi.api.knowledge.v1.model.list_child_chunks_request import ListChildChunksRequest
from dify_oapi.api.knowledge.v1.model.list_datasets_request import ListDatasetsRequest
from dify_oapi.api.knowledge.v1.model.list_documents_request import ListDocumentsRequest
from dify_oapi.api.knowledge.v1.model.list_segments_request import ListSegmentsRequest
from dify_oapi.api.knowledge.v1.model.list_tags_request import ListTagsRequest
from dify_oapi.api.knowledge.v1.model.preprocessing_rule import PreprocessingRule
from dify_oapi.api.knowledge.v1.model.process_rule import ProcessRule
from dify_oapi.api.knowledge.v1.model.process_rules import ProcessRules
from dify_oapi.api.knowledge.v1.model.retrieval_model import RetrievalModel
from dify_oapi.api.knowledge.v1.model.retrieve_from_dataset_request import RetrieveFromDatasetRequest
from dify_oapi.api.knowledge.v1.model.retrieve_from_dataset_request_body import RetrieveFromDatasetRequestBody
from dify_oapi.api.knowledge.v1.model.retrieve_from_dataset_response import RetrieveFromDatasetResponse
from dify_oapi.api.knowledge.v1.model.segment_content import SegmentContent
from dify_oapi.api.knowledge.v1.model.segmentation_rule import SegmentationRule
from dify_oapi.api.knowledge.v1.model.subchunk_segmentation_rule import SubChunkSegmentationRule
from dify_oapi.api.knowledge.v1.model.unbind_tags_from_dataset_request import UnbindTagsFromDatasetRequest
from dify_oapi.api.knowledge.v1.model.unbind_tags_from_dataset_request_body import UnbindTagsFromDatasetRequestBody
from dify_oapi.api.knowledge.v1.model.update_child_chunk_request import UpdateChildChunkRequest
from dify_oapi.api.knowledge.v1.model.update_child_chunk_request_body import UpdateChildChunkRequestBody
from dify_oapi.api.knowledge.v1.model.update_dataset_request import UpdateDatasetRequest
from dify_oapi.api.knowledge.v1.model.update_dataset_request_body import UpdateDatasetRequestBody
from dify_oapi.api.knowledge.v1.model.update_document_by_file_request import UpdateDocumentByFileRequest
from dify_oapi.api.knowledge.v1.model.update_document_by_file_request_body import UpdateDocumentByFileRequestBody
from dify_oapi.api.knowledge.v1.model.update_document_by_file_request_body_data import (
    UpdateDocumentByFileRequestBodyData,
)
from dify_oapi.api.knowledge.v1.model.update_document_by_text_request import UpdateDocumentByTextRequest
from dify_oapi.api.knowledge.v1.model.update_document_by_text_request_body import UpdateDocumentByTextRequestBody
from dify_oapi.api.knowledge.v1.model.update_document_status_request import UpdateDocumentStatusRequest
from dify_oapi.api.knowledge.v1.model.update_document_status_request_body import UpdateDocumentStatusRequestBody
from dify_oapi.api.knowledge.v1.model.update_segment_request import UpdateSegmentRequest
from dify_oapi.api.knowledge.v1.model.update_segment_request_body import UpdateSegmentRequestBody
from dify_oapi.api.knowledge.v1.model.update_tag_request import UpdateTagRequest
from dify_oapi.api.knowledge.v1.model.update_tag_request_body import UpdateTagRequestBody
from dify_oapi.client import Client
from dify_oapi.core.enum import HttpMethod
from dify_oapi.core.http.transport import Transport, connection_pool
from dify_oapi.core.model.base_request import BaseRequest
from dify_oapi.core.model.base_response import BaseResponse
from dify_oapi.core.model.request_option import RequestOption
from pydantic import BaseModel, ValidationError
from scenario_common import Check

CLIENT = "dify-oapi2"

# Where dify-oapi2 1.1.2 contradicts Dify (and its own docs); the scenario works around each one as described.
CLIENT_BUGS = {
    "indexing_status": "GetBatchIndexingStatusResponse is flat (id, indexing_status, ... at top level) but Dify "
    'answers {"data": [...]}: the client model drops everything. Parsed as {"data": list[BatchInfo]} (BatchInfo is the '
    "client's own item model).",
    "child_chunk_create": 'the client sends {"chunks": [{"content", "keywords"}]} and parses "data" as a list; Dify '
    'takes {"content"} and answers {"data": <one ChildChunk>}. Sent {"content"} through the client\'s transport and '
    "parsed data as the client's ChildChunkInfo.",
    "doc_metadata": "DocumentInfo.doc_metadata is ONE DocumentMetadata object or null, but Dify sends a list of "
    "{id, name, type, value}, [] when a document has none; the server sends the list Dify sends, [] included, so the "
    "client could parse no document answer at all. Patched at start-up: the client's DocumentInfo, and every client "
    "model that inherits or embeds it (rebuilt), take doc_metadata as list[DocumentMetadata + value] | "
    "DocumentMetadata | None; the answer is otherwise parsed by the client's own response model.",
    "display_status": "DocumentDisplayStatus has no 'disabled', so a disabled document cannot be parsed: the scenario "
    "never reads a document while it is disabled.",
    "metadata": "no metadata calls at all: /metadata and /documents/metadata go through the client's BaseRequest + "
    "Transport, parsed with the client's DocumentMetadata model.",
    "metadata_filtering": "RetrievalModel has no metadata_filtering_conditions: added to the body the client built.",
}

NEVER = "00000000-0000-4000-8000-000000000000"  # well-formed uuid that names nothing


# ---------------------------------------------------------------------------------------------------------------
# Response shapes for the workarounds above, built from the client's own models.


class BatchStatusList(BaseResponse):
    data: list[BatchInfo] | None = None


class ChildChunkCreated(BaseResponse):
    data: ChildChunkInfo | None = None


class MetadataValue(DocumentMetadata):
    value: str | int | float | None = None


class MetadataField(DocumentMetadata, BaseResponse):
    pass


class MetadataFieldCount(DocumentMetadata):
    count: int | None = None


class MetadataList(BaseResponse):
    doc_metadata: list[MetadataFieldCount] | None = None
    built_in_field_enabled: bool | None = None


class ResultResponse(BaseResponse):
    result: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# CLIENT_BUGS["doc_metadata"]: patch the client's own models so that they take the list Dify sends.

DOC_METADATA = list[MetadataValue] | DocumentMetadata | None
METADATA_SAMPLE = {"id": "00000000-0000-4000-8000-000000000001", "name": "category", "type": "string", "value": "x"}


def classes_in(annotation: Any) -> set[type]:
    """The classes named anywhere in a (resolved) type annotation: in unions, lists, Optional, ..."""
    found: set[type] = set()
    stack = [annotation]
    while stack:
        a = stack.pop()
        if typing.get_origin(a) is None and isinstance(a, type):
            found.add(a)
        stack.extend(typing.get_args(a))
    return found


def is_list(annotation: Any) -> bool:
    stack = [annotation]
    while stack:
        a = stack.pop()
        if typing.get_origin(a) is list:
            return True
        stack.extend(typing.get_args(a))
    return False


def client_models() -> list[type[BaseModel]]:
    """Every pydantic model defined in the client's modules (all of them imported)."""
    models: dict[str, type[BaseModel]] = {}
    for info in pkgutil.walk_packages(dify_oapi.__path__, "dify_oapi."):
        for obj in vars(importlib.import_module(info.name)).values():
            if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__.startswith("dify_oapi."):
                models[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(models.values())


def sample(model: type[BaseModel], affected: set[type[BaseModel]], metadata: list[Any]) -> dict[str, Any]:
    """A payload for ``model`` that reaches every DocumentInfo inside it, each with ``doc_metadata=metadata``."""
    if issubclass(model, DocumentInfo):
        return {"doc_metadata": metadata}
    payload: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        inner = sorted(classes_in(field.annotation) & affected, key=lambda m: m.__qualname__)
        if inner:
            value = sample(inner[0], affected, metadata)
            payload[field.validation_alias if isinstance(field.validation_alias, str) else name] = (
                [value] if is_list(field.annotation) else value
            )
    return payload


def doc_metadata_values(data: Any) -> list[Any]:
    """Every ``doc_metadata`` value in a dumped model."""
    if isinstance(data, dict):
        own = [data["doc_metadata"]] if "doc_metadata" in data else []
        return own + [v for value in data.values() for v in doc_metadata_values(value)]
    if isinstance(data, list):
        return [v for item in data for v in doc_metadata_values(item)]
    return []


def patch_doc_metadata() -> list[str]:
    """Give ``doc_metadata`` the type ``DOC_METADATA`` in the client's DocumentInfo and its subclasses, rebuild every
    client model that inherits or embeds one of them (directly or in a list, at any depth; embedded ones first), and
    check that each now parses a list, ``[]`` included, as the client parses an answer (``cls(**json)``). Returns the
    names of the patched models; raises AssertionError if the patch did not take."""
    models = client_models()
    uses = {
        m: ({c for f in m.model_fields.values() for c in classes_in(f.annotation)} | set(m.__mro__[1:])) - {m}
        for m in models
    }
    affected: set[type[BaseModel]] = {m for m in models if issubclass(m, DocumentInfo)}
    assert DocumentInfo in affected, "the client's DocumentInfo was not found in its modules"
    while grown := {m for m in models if m not in affected and uses[m] & affected}:
        affected |= grown
    order = list(graphlib.TopologicalSorter({m: uses[m] & affected for m in affected}).static_order())
    for m in order:
        if issubclass(m, DocumentInfo):
            m.model_fields["doc_metadata"].annotation = DOC_METADATA
        m.model_rebuild(force=True)
    for m in order:
        for metadata in ([METADATA_SAMPLE], []):
            try:
                found = doc_metadata_values(m(**sample(m, affected, metadata)).model_dump())
            except ValidationError as e:
                raise AssertionError(f"patch did not take: {m.__qualname__} rejects doc_metadata={metadata!r}") from e
            assert found and all(v == metadata for v in found), (
                f"patch did not take: {m.__qualname__} parsed doc_metadata={metadata!r} as {found!r}"
            )
    assert any(m.__name__ == "GetDocumentResponse" for m in order), "GetDocumentResponse was not patched"
    assert any(m.__name__ == "ListDocumentsResponse" for m in order), "ListDocumentsResponse was not patched"
    return [m.__qualname__ for m in order]


# ---------------------------------------------------------------------------------------------------------------


class Scenario:
    def __init__(self, base_url: str, key: str, report: sc.Report) -> None:
        self.client = Client.builder().domain(base_url).timeout(120).max_retry_count(1).build()
        self.api = self.client.knowledge.v1
        self.config = self.api.dataset.config
        self.opt = RequestOption.builder().api_key(key).build()
        self.last_body = b""  # body of the last answer, to go on when the client cannot parse a creation's answer
        cfg = self.config
        pool = connection_pool.get_sync_client(
            cfg.domain or "",
            cfg.timeout,
            cfg.max_keepalive_connections,
            cfg.max_connections,
            cfg.keepalive_expiry,
            cfg.verify_ssl,  # type: ignore[arg-type]
        )  # the very httpx.Client the client's Transport uses (same key)
        pool.event_hooks = {"request": [], "response": [self._remember]}
        self.report = report
        self.index_timeout = float(os.environ.get("DIFY_INDEX_TIMEOUT", "120"))
        # ids filled in by the checks
        self.ds: str | None = None
        self.ds_h: str | None = None
        self.docs: dict[str, str] = {}  # label -> document id
        self.batches: dict[str, str] = {}  # label -> batch
        self.dataset_of: dict[str, str] = {}  # label -> dataset id

    # -- helpers -------------------------------------------------------------------------------------------------

    def _remember(self, response: httpx.Response) -> None:
        self.last_body = response.read()

    def recover_document(self, label: str, dataset: str) -> None:
        """The client raised on a creation's answer: take the ids from the raw answer so the story can go on (the
        check still fails)."""
        try:
            body = json.loads(self.last_body)
        except ValueError:
            return
        doc = body.get("document") if isinstance(body, dict) else None
        if isinstance(doc, dict) and doc.get("id") and body.get("batch"):
            self.docs[label], self.batches[label], self.dataset_of[label] = doc["id"], body["batch"], dataset

    def raw(self, method: HttpMethod, uri: str, paths: dict[str, str], body: dict[str, Any] | None = None) -> Any:
        """A request the client has no typed call for, built as the client builds its own."""
        req = BaseRequest()
        req.http_method = method
        req.uri = uri
        req.paths = dict(paths)
        if body is not None:
            req.body = body
        return req

    def expect_error(self, c: Check, resp: BaseResponse, status: int, code: str) -> None:
        c.saw(resp)
        c.expect(not resp.success, "the client took the answer for a success (an error must be JSON with a `code`)")
        c.status(resp, status)
        c.equal(resp.code, code, "error code")
        c.expect(resp.message_, "error `message` missing")
        try:
            envelope = json.loads(resp.raw.content or b"{}") if resp.raw else {}
        except ValueError:
            envelope = {}
        c.equal(envelope.get("status") if isinstance(envelope, dict) else None, status, "envelope `status`")

    def retrieve(self, dataset: str, query: str, method: str, top_k: int = 5, filters: Any = None) -> Any:
        body = RetrieveFromDatasetRequestBody(
            query=query,
            retrieval_model=RetrievalModel(
                search_method=method,  # type: ignore[arg-type]
                reranking_enable=False,
                top_k=top_k,
                score_threshold_enabled=False,
            ),
        )
        req = RetrieveFromDatasetRequest.builder().dataset_id(dataset).request_body(body).build()
        if filters is not None:
            req.body["retrieval_model"]["metadata_filtering_conditions"] = filters
        return self.api.dataset.retrieve(req, self.opt)

    def expect_records(self, c: Check, resp: RetrieveFromDatasetResponse, query: str) -> list[Any]:
        c.saw(resp)
        c.status(resp, 200)
        c.equal(resp.query.content if resp.query else None, query, "query.content")
        records = resp.records or []
        c.context["ranking"] = [
            [r.segment.document.name if r.segment and r.segment.document else None, r.score] for r in records
        ]
        for i, r in enumerate(records):
            c.present(r, "segment", f"records[{i}]")
            if r.segment:
                c.present(r.segment, "id content document", f"records[{i}].segment")
                if r.segment.document:
                    c.present(r.segment.document, "id name data_source_type", f"records[{i}].segment.document")
        return records

    def expect_first(self, c: Check, resp: RetrieveFromDatasetResponse, query: str, doc: str) -> None:
        records = self.expect_records(c, resp, query)
        c.require(records, "no records")
        top = records[0].segment
        c.equal(top.document.id if top and top.document else None, self.docs[doc], f"first record's document ({doc})")

    def segments(self, dataset: str, doc_id: str) -> Any:
        req = ListSegmentsRequest.builder().dataset_id(dataset).document_id(doc_id).build()
        return self.api.segment.list(req, self.opt)

    def segment_text(self, c: Check, dataset: str, doc_id: str) -> str:
        resp = self.segments(dataset, doc_id)
        c.saw(resp, "segments")
        c.status(resp, 200, "segments HTTP status")
        return "\n".join(s.content or "" for s in resp.data or [])

    def batch_status(self, dataset: str, batch: str) -> BatchStatusList:
        req = GetBatchIndexingStatusRequest.builder().dataset_id(dataset).batch(batch).build()
        return Transport.execute(self.config, req, unmarshal_as=BatchStatusList, option=self.opt)

    def wait_indexed(self, c: Check, label: str, timeout: float) -> None:
        dataset, batch, doc_id = self.dataset_of[label], self.batches[label], self.docs[label]

        def step() -> tuple[bool, BatchStatusList]:
            resp = self.batch_status(dataset, batch)
            items = resp.data or []
            done = resp.raw is not None and resp.raw.status_code != 200
            done = done or any(i.indexing_status in ("completed", "error") for i in items)
            return done, resp

        _, resp = sc.poll(step, timeout)
        c.saw(resp)
        c.context["client_workaround"] = CLIENT_BUGS["indexing_status"]
        c.status(resp, 200)
        items = resp.data or []
        c.require(items, "indexing-status: `data` is empty or missing")
        item = items[0]
        c.present(item, "id indexing_status completed_segments total_segments", "data[0]")
        c.equal(item.id, doc_id, "data[0].id")
        c.require(item.indexing_status == "completed", f"not completed in {timeout:.0f} s: {item!r}")
        c.present(item, "processing_started_at completed_at", "data[0] (completed)")
        c.expect(item.error is None, f"error set: {item.error!r}")
        c.expect((item.total_segments or 0) > 0, "total_segments is 0")
        c.equal(item.completed_segments, item.total_segments, "completed_segments")

    # -- datasets ------------------------------------------------------------------------------------------------

    def create_dataset(self, c: Check, name: str) -> str:
        body = CreateDatasetRequestBody(
            name=name,
            description="conformance: dify-oapi2",
            indexing_technique="high_quality",
            permission="only_me",
        )
        resp = self.api.dataset.create(CreateDatasetRequest.builder().request_body(body).build(), self.opt)
        c.saw(resp)
        c.status(resp, 200)
        c.expect(resp.success, f"client says failure: code={resp.code!r}")
        c.present(resp, "id name permission indexing_technique created_at updated_at retrieval_model_dict", "dataset")
        c.equal(resp.name, name, "name")
        c.equal(resp.indexing_technique, "high_quality", "indexing_technique")
        c.equal(resp.permission, "only_me", "permission")
        c.equal(resp.document_count, 0, "document_count")
        c.equal(resp.provider, "vendor", "provider")
        c.require(resp.id, "no dataset id")
        assert resp.id is not None
        return resp.id

    def datasets(self) -> None:
        r = self.report
        name = sc.unique("conf-oapi2")
        self.ds = r.run("dataset.create", lambda c: self.create_dataset(c, name))
        self.ds_h = r.run("dataset.create[parent-child]", lambda c: self.create_dataset(c, sc.unique("conf-oapi2-pc")))

        def duplicate(c: Check) -> None:
            body = CreateDatasetRequestBody(name=name, indexing_technique="high_quality")
            resp = self.api.dataset.create(CreateDatasetRequest.builder().request_body(body).build(), self.opt)
            self.expect_error(c, resp, 409, "dataset_name_duplicate")

        r.run("error.dataset_name_duplicate", duplicate, {"dataset": self.ds})

        def invalid(c: Check) -> None:
            body = CreateDatasetRequestBody(name="x" * 41, indexing_technique="high_quality")
            resp = self.api.dataset.create(CreateDatasetRequest.builder().request_body(body).build(), self.opt)
            self.expect_error(c, resp, 400, "invalid_param")

        r.run("error.invalid_param[name over 40 chars]", invalid)

        def listing(c: Check) -> None:
            resp = self.api.dataset.list(ListDatasetsRequest.builder().page(1).limit(100).build(), self.opt)
            c.saw(resp)
            c.status(resp, 200)
            c.present(resp, "data has_more limit total page", "list")
            ids = [d.id for d in resp.data or []]
            c.expect(self.ds in ids and self.ds_h in ids, f"created datasets not listed: {ids}")
            c.equal(resp.page, 1, "page")
            c.equal(resp.limit, 100, "limit")
            c.expect((resp.total or 0) >= 2, f"total {resp.total}")
            c.equal(resp.has_more, (resp.total or 0) > 100, "has_more")
            for d in resp.data or []:
                c.present(d, "id name indexing_technique permission created_at", f"dataset {d.id}")

        r.run("dataset.list", listing, {"dataset": self.ds, "parent-child dataset": self.ds_h})

        def get(c: Check) -> None:
            assert self.ds is not None
            resp = self.api.dataset.get(GetDatasetRequest.builder().dataset_id(self.ds).build(), self.opt)
            c.saw(resp)
            c.status(resp, 200)
            c.equal(resp.id, self.ds, "id")
            c.equal(resp.name, name, "name")
            c.present(resp, "embedding_model embedding_model_provider embedding_available retrieval_model_dict", "get")
            rm = resp.retrieval_model_dict
            if rm is not None:
                c.present(rm, "search_method reranking_enable top_k score_threshold_enabled", "retrieval_model_dict")

        r.run("dataset.get", get, {"dataset": self.ds})

        def update(c: Check) -> None:
            assert self.ds is not None
            body = UpdateDatasetRequestBody(description="updated by the dify-oapi2 scenario")
            req = UpdateDatasetRequest.builder().dataset_id(self.ds).request_body(body).build()
            resp = self.api.dataset.update(req, self.opt)
            c.saw(resp)
            c.status(resp, 200)
            c.equal(resp.description, "updated by the dify-oapi2 scenario", "description")
            c.equal(resp.name, name, "name (not in the body: unchanged)")
            c.equal(resp.indexing_technique, "high_quality", "indexing_technique")

        r.run("dataset.update", update, {"dataset": self.ds})

    # -- documents -----------------------------------------------------------------------------------------------

    def check_new_document(self, c: Check, resp: Any, label: str, dataset: str, name: str, doc_form: str) -> str:
        c.saw(resp)
        c.status(resp, 200)
        c.expect(resp.success, f"client says failure: code={resp.code!r}")
        doc = resp.document
        c.require(doc is not None, "no `document`")
        c.present(doc, "id position data_source_type name created_from created_at indexing_status", "document")
        c.present(doc, "enabled archived display_status doc_form", "document")
        c.equal(doc.name, name, "document.name")
        c.equal(doc.data_source_type, "upload_file", "document.data_source_type")
        c.equal(doc.created_from, "api", "document.created_from")
        c.equal(doc.doc_form, doc_form, "document.doc_form")
        c.equal(doc.enabled, True, "document.enabled")
        c.equal(doc.archived, False, "document.archived")
        c.equal(doc.doc_metadata, [], "document.doc_metadata (a list, [] when none)")
        c.expect(re.match(sc.BATCH_PATTERN, resp.batch or ""), f"batch {resp.batch!r} is not 20 digits")
        c.require(doc.id and resp.batch, "no document id or batch")
        self.docs[label], self.batches[label], self.dataset_of[label] = doc.id, resp.batch, dataset
        return str(doc.id)

    def create_by_text(self, c: Check, label: str, dataset: str, name: str, text: str, hierarchical: bool) -> str:
        if hierarchical:
            rule = ProcessRule(
                mode="hierarchical",
                rules=ProcessRules(
                    pre_processing_rules=[
                        PreprocessingRule(id="remove_extra_spaces", enabled=True),
                        PreprocessingRule(id="remove_urls_emails", enabled=False),
                    ],
                    segmentation=SegmentationRule(separator="\n\n", max_tokens=500, chunk_overlap=0),
                    parent_mode="paragraph",
                    subchunk_segmentation=SubChunkSegmentationRule(separator="\n", max_tokens=200, chunk_overlap=0),
                ),
            )
            form = "hierarchical_model"
        else:
            rule, form = ProcessRule(mode="automatic"), "text_model"
        body = CreateDocumentByTextRequestBody(
            name=name,
            text=text,
            indexing_technique="high_quality",
            doc_form=form,  # type: ignore[arg-type]
            doc_language="English",
            process_rule=rule,
        )
        req = CreateDocumentByTextRequest.builder().dataset_id(dataset).request_body(body).build()
        c.context["client_workaround"] = CLIENT_BUGS["doc_metadata"]
        try:
            resp = self.api.document.create_by_text(req, self.opt)
        except ValidationError:
            self.recover_document(label, dataset)
            raise
        return self.check_new_document(c, resp, label, dataset, name, form)

    def create_by_file(self, c: Check, label: str, filename: str, content: bytes) -> str:
        assert self.ds is not None
        data = CreateDocumentByFileRequestBodyData(
            indexing_technique="high_quality", doc_form="text_model", process_rule=ProcessRule(mode="automatic")
        )
        body = CreateDocumentByFileRequestBody.builder().data(data).build()
        req = (
            CreateDocumentByFileRequest.builder()
            .dataset_id(self.ds)
            .request_body(body)
            .file(io.BytesIO(content), filename)
            .build()
        )
        c.context["client_workaround"] = CLIENT_BUGS["doc_metadata"]
        try:
            resp = self.api.document.create_by_file(req, self.opt)
        except ValidationError:
            self.recover_document(label, self.ds)
            raise
        doc_id = self.check_new_document(c, resp, label, self.ds, filename, "text_model")
        info = resp.document.data_source_info if resp.document else None
        c.expect(info is not None and info.upload_file_id, "document.data_source_info.upload_file_id missing")
        return doc_id

    FILES: ClassVar[tuple[tuple[str, str, Callable[[], bytes]], ...]] = (
        ("txt", "volcanoes.txt", lambda: sc.TXT_DOC.encode()),
        ("md", "sourdough.md", sc.markdown_bytes),
        ("html", "jupiter.html", sc.html_bytes),
        ("docx", "chess-openings.docx", sc.docx_bytes),
        ("pdf", "honeybees.pdf", sc.pdf_bytes),
    )
    FILE_MARKERS: ClassVar[dict[str, str]] = {
        "txt": "magma",
        "md": "lactobacilli",
        "html": "Ganymede",
        "docx": "Sicilian",
        "pdf": "waggle",
    }

    def documents(self) -> None:
        r = self.report
        ds = {"dataset": self.ds}
        r.run(
            "document.create_by_text",
            lambda c: self.create_by_text(c, "text", str(self.ds), "Photosynthesis notes", sc.TEXT_DOC, False),
            ds,
        )
        for ext, filename, make in self.FILES:

            def by_file(c: Check, ext: str = ext, filename: str = filename, make: Callable[[], bytes] = make) -> str:
                return self.create_by_file(c, ext, filename, make())

            r.run(f"document.create_by_file[{ext}]", by_file, ds)
        r.run(
            "document.create_by_text[update target]",
            lambda c: self.create_by_text(c, "update", str(self.ds), "Update target", sc.UPDATE_DOC_V1, False),
            ds,
        )
        r.run(
            "document.create_by_text[hierarchical_model]",
            lambda c: self.create_by_text(c, "hierarchical", str(self.ds_h), "Glaciers", sc.HIERARCHICAL_DOC, True),
            {"parent-child dataset": self.ds_h},
        )
        # the client's own (flat) model for the batch status: must at least not raise on Dify's answer
        first = next(iter(self.docs), None)

        def client_model(c: Check) -> None:
            assert first is not None
            req = (
                GetBatchIndexingStatusRequest.builder()
                .dataset_id(self.dataset_of[first])
                .batch(self.batches[first])
                .build()
            )
            resp = self.api.document.get_batch_status(req, self.opt)
            c.saw(resp)
            c.status(resp, 200)
            c.context["note"] = CLIENT_BUGS["indexing_status"]

        r.run("document.indexing_status[client model parses]", client_model, {"a created document": first})
        start = time.monotonic()  # one clock for all the batches: they index concurrently
        for label in list(self.docs):
            left = max(5.0, self.index_timeout - (time.monotonic() - start))

            def indexed(c: Check, label: str = label, left: float = left) -> None:
                self.wait_indexed(c, label, left)

            r.run(f"document.indexing_status[{label}]", indexed)

    def listing(self) -> None:
        r = self.report
        ds_docs = [lbl for lbl in self.docs if self.dataset_of.get(lbl) == self.ds]

        def list_all(c: Check) -> None:
            assert self.ds is not None
            c.context["client_workaround"] = CLIENT_BUGS["doc_metadata"]
            resp = self.api.document.list(
                ListDocumentsRequest.builder().dataset_id(self.ds).page(1).limit(100).build(), self.opt
            )
            c.saw(resp)
            c.status(resp, 200)
            c.present(resp, "data has_more limit total page", "list")
            by_id = {d.id: d for d in resp.data or []}
            missing = [lbl for lbl in ds_docs if self.docs[lbl] not in by_id]
            c.expect(not missing, f"documents not listed: {missing}")
            c.equal(resp.total, len(ds_docs), "total")
            c.equal(resp.page, 1, "page")
            c.equal(resp.limit, 100, "limit")
            c.equal(resp.has_more, False, "has_more")
            for d in resp.data or []:
                what = f"document {d.name}"
                c.present(d, "id position name data_source_type created_from created_at tokens word_count", what)
                c.equal(d.indexing_status, "completed", f"{what}: indexing_status")
                c.equal(d.display_status, "available", f"{what}: display_status")
                c.expect((d.word_count or 0) > 0, f"{what}: word_count {d.word_count}")
                c.equal(d.doc_metadata, [], f"{what}: doc_metadata (a list, [] when none)")

        r.run("document.list", list_all, {"dataset": self.ds})

        def keyword(c: Check) -> None:
            assert self.ds is not None
            c.context["client_workaround"] = CLIENT_BUGS["doc_metadata"]
            req = ListDocumentsRequest.builder().dataset_id(self.ds).keyword("volcano").build()
            resp = self.api.document.list(req, self.opt)
            c.saw(resp)
            c.status(resp, 200)
            c.equal([d.name for d in resp.data or []], ["volcanoes.txt"], "names listed for keyword 'volcano'")

        r.run("document.list[keyword]", keyword, {"dataset": self.ds, "txt document": self.docs.get("txt")})

        def get(c: Check) -> None:
            assert self.ds is not None
            c.context["client_workaround"] = CLIENT_BUGS["doc_metadata"]
            req = GetDocumentRequest.builder().dataset_id(self.ds).document_id(self.docs["text"]).build()
            resp = self.api.document.get(req, self.opt)
            c.saw(resp)
            c.status(resp, 200)
            c.equal(resp.id, self.docs["text"], "id")
            c.equal(resp.name, "Photosynthesis notes", "name")
            # the detail answer has no word_count (list and create do); segment_count etc. are not in the model
            c.present(resp, "position data_source_type created_at updated_at tokens hit_count", "document")
            c.equal(resp.indexing_status, "completed", "indexing_status")
            c.equal(resp.display_status, "available", "display_status")
            c.equal(resp.doc_form, "text_model", "doc_form")
            c.equal(resp.doc_metadata, [], "doc_metadata (a list, [] when none)")
            c.expect((resp.tokens or 0) > 0, f"tokens {resp.tokens} (high_quality: embedding tokens)")
            raw = json.loads(resp.raw.content) if resp.raw and resp.raw.content else {}
            c.expect(isinstance(raw.get("segment_count"), int) and raw["segment_count"] > 0, "segment_count")
            c.expect(isinstance(raw.get("average_segment_length"), int), "average_segment_length")
            c.equal(raw.get("doc_language"), "English", "doc_language")

        r.run("document.get", get, {"dataset": self.ds, "text document": self.docs.get("text")})

        def counts(c: Check) -> None:
            assert self.ds is not None
            resp = self.api.dataset.get(GetDatasetRequest.builder().dataset_id(self.ds).build(), self.opt)
            c.saw(resp)
            c.equal(resp.document_count, len(ds_docs), "document_count")
            c.expect((resp.word_count or 0) > 0, f"word_count {resp.word_count}")
            c.equal(resp.doc_form, "text_model", "doc_form")

        r.run("dataset.get[counts]", counts, {"dataset": self.ds, "documents": ds_docs or None})

        for ext, marker in self.FILE_MARKERS.items():

            def content(c: Check, ext: str = ext, marker: str = marker) -> None:
                assert self.ds is not None
                text = self.segment_text(c, self.ds, self.docs[ext])
                c.context["text"] = text[:600]
                c.expect(marker in text, f"{marker!r} not in the segments: the file was not parsed")
                if ext == "html":
                    c.expect("<p>" not in text and "<h1>" not in text, "HTML tags left in the segments")

            r.run(f"document.file_content[{ext}]", content, {"dataset": self.ds, f"{ext} document": self.docs.get(ext)})

    # -- segments ------------------------------------------------------------------------------------------------

    def segment_checks(self) -> None:
        r = self.report
        doc = self.docs.get("text")
        needs = {"dataset": self.ds, "text document": doc}
        state: dict[str, str] = {}

        def listing(c: Check) -> None:
            assert self.ds is not None and doc is not None
            resp = self.segments(self.ds, doc)
            c.saw(resp)
            c.status(resp, 200)
            c.present(resp, "data has_more limit total page", "list")
            data = resp.data or []
            c.require(data, "no segments")
            c.equal(resp.total, len(data), "total")
            c.equal(resp.page, 1, "page")
            c.equal(resp.limit, 20, "limit (default 20)")
            c.equal(resp.has_more, False, "has_more")
            for s in data:
                what = f"segment {s.position}"
                c.present(s, "id position document_id content word_count tokens status enabled created_at", what)
                c.present(s, "index_node_id index_node_hash hit_count", what)
                c.equal(s.document_id, doc, f"{what}: document_id")
                c.equal(s.status, "completed", f"{what}: status")
                c.equal(s.enabled, True, f"{what}: enabled")
                c.equal(s.word_count, len(s.content or ""), f"{what}: word_count (= len(content))")
            positions = [s.position for s in data]
            c.equal(positions, sorted(positions), "positions ascending")
            text = " ".join(s.content or "" for s in data)
            c.expect("Chlorophyll" in text and "Calvin cycle" in text, "document text missing from its segments")

        r.run("segment.list", listing, needs)
        new_content = "Axolotls can regrow lost limbs, parts of their heart and even parts of their brain."

        def create(c: Check) -> None:
            assert self.ds is not None and doc is not None
            body = CreateSegmentRequestBody(segments=[SegmentContent(content=new_content, keywords=["axolotl"])])
            req = CreateSegmentRequest.builder().dataset_id(self.ds).document_id(doc).request_body(body).build()
            resp = self.api.segment.create(req, self.opt)
            c.saw(resp)
            c.status(resp, 200)
            data = resp.data or []
            c.require(len(data) == 1, f"expected 1 segment in data, got {len(data)}")
            s = data[0]
            c.present(s, "id position document_id content word_count tokens status enabled keywords", "segment")
            c.equal(s.content, new_content, "content")
            c.equal(s.document_id, doc, "document_id")
            c.equal(s.status, "completed", "status (segments are indexed synchronously)")
            c.equal(s.enabled, True, "enabled")
            c.equal(s.word_count, len(new_content), "word_count")
            c.expect("axolotl" in (s.keywords or []), f"keywords {s.keywords}")
            c.require(s.id, "no segment id")
            state["segment"] = str(s.id)

        r.run("segment.create", create, needs)

        def searchable(c: Check, query: str, present: bool) -> None:
            assert self.ds is not None
            records = self.expect_records(c, self.retrieve(self.ds, query, "full_text_search"), query)
            ids = [rec.segment.id for rec in records if rec.segment]
            if present:
                c.require(ids, "no records")
                c.equal(ids[0], state["segment"], "first record's segment")
            else:
                c.expect(state["segment"] not in ids, "the segment is still found")

        created = {**needs, "created segment": state.get("segment")}
        r.run("segment.create[searchable]", lambda c: searchable(c, "axolotls regrow limbs", True), created)

        def get(c: Check) -> None:
            assert self.ds is not None and doc is not None
            req = GetSegmentRequest.builder().dataset_id(self.ds).document_id(doc).segment_id(state["segment"]).build()
            resp = self.api.segment.get(req, self.opt)
            c.saw(resp)
            c.status(resp, 200)
            data = c.need(resp.data, "no `data`")
            c.equal(data.id, state["segment"], "data.id")
            c.equal(data.content, new_content, "data.content")
            c.equal(resp.doc_form, "text_model", "doc_form")

        r.run("segment.get", get, created)
        updated = "Quokkas are small marsupials that live on Rottnest Island off the coast of Western Australia."

        def update(c: Check) -> None:
            assert self.ds is not None and doc is not None
            body = UpdateSegmentRequestBody(segment=SegmentContent(content=updated))
            req = (
                UpdateSegmentRequest.builder()
                .dataset_id(self.ds)
                .document_id(doc)
                .segment_id(state["segment"])
                .request_body(body)
                .build()
            )
            resp = self.api.segment.update(req, self.opt)
            c.saw(resp)
            c.status(resp, 200)
            data = c.need(resp.data, "no `data`")
            c.equal(data.id, state["segment"], "data.id")
            c.equal(data.content, updated, "data.content")
            c.equal(data.word_count, len(updated), "data.word_count")
            c.equal(data.status, "completed", "data.status")
            c.equal(resp.doc_form, "text_model", "doc_form")

        r.run("segment.update", update, created)
        r.run("segment.update[searchable]", lambda c: searchable(c, "quokkas Rottnest Island", True), created)
        r.run("segment.update[old text gone]", lambda c: searchable(c, "axolotls regrow limbs", False), created)

        def delete(c: Check) -> None:
            assert self.ds is not None and doc is not None
            req = (
                DeleteSegmentRequest.builder().dataset_id(self.ds).document_id(doc).segment_id(state["segment"]).build()
            )
            resp = self.api.segment.delete(req, self.opt)
            c.saw(resp)
            c.status(resp, 204)
            c.expect(resp.success, f"client says failure: {resp.code!r}")

        r.run("segment.delete", delete, created)

        def gone(c: Check) -> None:
            assert self.ds is not None and doc is not None
            req = GetSegmentRequest.builder().dataset_id(self.ds).document_id(doc).segment_id(state["segment"]).build()
            self.expect_error(c, self.api.segment.get(req, self.opt), 404, "not_found")

        r.run("segment.get[after delete]", gone, created)
        r.run("segment.delete[not searchable]", lambda c: searchable(c, "quokkas Rottnest Island", False), created)

    # -- child chunks (hierarchical_model) -----------------------------------------------------------------------

    def child_chunks(self) -> None:
        r = self.report
        doc = self.docs.get("hierarchical")
        needs = {"parent-child dataset": self.ds_h, "hierarchical document": doc}
        state: dict[str, Any] = {}

        def listing(c: Check) -> None:
            assert self.ds_h is not None and doc is not None
            segs = self.segments(self.ds_h, doc)
            c.saw(segs, "segments")
            c.status(segs, 200, "segments HTTP status")
            data = segs.data or []
            c.equal(len(data), 2, "parent segments (paragraph mode, separator \\n\\n)")
            c.require(data and data[0].id, "no parent segment")
            seg = str(data[0].id)
            req = ListChildChunksRequest.builder().dataset_id(self.ds_h).document_id(doc).segment_id(seg).build()
            resp = self.api.chunk.list(req, self.opt)
            c.saw(resp)
            c.status(resp, 200)
            c.present(resp, "data total total_pages page limit", "list")
            chunks = resp.data or []
            c.equal(len(chunks), 3, "child chunks of the first parent (subchunk separator \\n)")
            for ch in chunks:
                c.present(ch, "id segment_id content word_count", "child chunk")
                c.equal(ch.segment_id, seg, "child chunk segment_id")
                c.equal(ch.word_count, len(ch.content or ""), "child chunk word_count")
            c.equal(resp.total, len(chunks), "total")
            c.equal(resp.page, 1, "page")
            c.expect("U-shaped valleys" in " ".join(ch.content or "" for ch in chunks), "child text missing")
            state["segment"], state["count"] = seg, len(chunks)

        r.run("child_chunk.list", listing, needs)
        seg_needs = {**needs, "parent segment": state.get("segment")}
        text = "Ice cores drilled from old glaciers preserve bubbles of ancient air."

        def create(c: Check) -> None:
            assert self.ds_h is not None and doc is not None
            c.require(state.get("segment"), "no parent segment (child_chunk.list failed)")
            body = CreateChildChunkRequestBody(chunks=[ChunkContent(content=text)])
            req = (
                CreateChildChunkRequest.builder()
                .dataset_id(self.ds_h)
                .document_id(doc)
                .segment_id(state["segment"])
                .request_body(body)
                .build()
            )
            req.body = {"content": text}  # see CLIENT_BUGS["child_chunk_create"]
            c.context["client_workaround"] = CLIENT_BUGS["child_chunk_create"]
            resp = Transport.execute(self.config, req, unmarshal_as=ChildChunkCreated, option=self.opt)
            c.saw(resp)
            c.status(resp, 200)
            ch = c.need(resp.data, "no `data`")
            c.present(ch, "id segment_id content word_count created_at", "data")
            c.equal(ch.segment_id, state["segment"], "data.segment_id")
            c.equal(ch.content, text, "data.content")
            c.equal(ch.word_count, len(text), "data.word_count")
            raw = json.loads(resp.raw.content) if resp.raw and resp.raw.content else {}
            c.equal((raw.get("data") or {}).get("type"), "customized", "data.type")
            c.require(ch.id, "no child chunk id")
            state["child"] = ch.id

        r.run("child_chunk.create", create, seg_needs)
        child_needs = {**needs, "child chunk": state.get("child")}
        updated = "Ice cores drilled from glaciers keep bubbles of air that is hundreds of thousands of years old."

        def update(c: Check) -> None:
            assert self.ds_h is not None and doc is not None
            c.require(state.get("child"), "no child chunk (child_chunk.create failed)")
            req = (
                UpdateChildChunkRequest.builder()
                .dataset_id(self.ds_h)
                .document_id(doc)
                .segment_id(state["segment"])
                .child_chunk_id(state["child"])
                .request_body(UpdateChildChunkRequestBody(content=updated))
                .build()
            )
            resp = self.api.chunk.update(req, self.opt)
            c.saw(resp)
            c.status(resp, 200)
            data = c.need(resp.data, "no `data`")
            c.equal(data.id, state["child"], "data.id")
            c.equal(data.content, updated, "data.content")
            c.equal(data.word_count, len(updated), "data.word_count")

        r.run("child_chunk.update", update, child_needs)

        def searchable(c: Check) -> None:
            assert self.ds_h is not None
            c.require(state.get("child"), "no child chunk")
            query = "ice cores ancient air bubbles"
            resp = self.retrieve(self.ds_h, query, "full_text_search")
            records = self.expect_records(c, resp, query)
            c.require(records, "no records")
            c.equal(records[0].segment.id if records[0].segment else None, state["segment"], "first record's segment")
            raw = json.loads(resp.raw.content) if resp.raw and resp.raw.content else {}
            children = ((raw.get("records") or [{}])[0] or {}).get("child_chunks") or []
            c.expect(any("Ice cores" in (ch.get("content") or "") for ch in children), "child_chunks lack the hit")

        r.run("retrieve[hierarchical: updated child chunk]", searchable, child_needs)

        def delete(c: Check) -> None:
            assert self.ds_h is not None and doc is not None
            c.require(state.get("child"), "no child chunk")
            req = (
                DeleteChildChunkRequest.builder()
                .dataset_id(self.ds_h)
                .document_id(doc)
                .segment_id(state["segment"])
                .child_chunk_id(state["child"])
                .build()
            )
            resp = self.api.chunk.delete(req, self.opt)
            c.saw(resp)
            c.status(resp, 204)
            listed = self.api.chunk.list(
                ListChildChunksRequest.builder()
                .dataset_id(self.ds_h)
                .document_id(doc)
                .segment_id(state["segment"])
                .build(),
                self.opt,
            )
            ids = [ch.id for ch in listed.data or []]
            c.expect(state["child"] not in ids, "deleted child chunk still listed")
            c.equal(len(ids), state["count"], "child chunks after delete")

        r.run("child_chunk.delete", delete, child_needs)

        def retrieve(c: Check) -> None:
            assert self.ds_h is not None
            query = "How do glaciers shape the valleys they flow through?"
            resp = self.retrieve(self.ds_h, query, "semantic_search")
            self.expect_first(c, resp, query, "hierarchical")
            raw = json.loads(resp.raw.content) if resp.raw and resp.raw.content else {}
            first = (raw.get("records") or [{}])[0] or {}
            c.expect(first.get("child_chunks"), "records[0].child_chunks empty for a hierarchical document")

        r.run("retrieve[hierarchical]", retrieve, needs)

    # -- retrieval -----------------------------------------------------------------------------------------------

    QUERIES: ClassVar[dict[str, str]] = {
        "semantic_search": "How do green plants turn sunlight into chemical energy?",
        "full_text_search": "chlorophyll chloroplasts",
        "hybrid_search": "chlorophyll absorbs sunlight",
        "keyword_search": "chlorophyll",
    }
    FILE_QUERIES: ClassVar[dict[str, str]] = {
        "txt": "magma and lava from volcanoes",
        "md": "sourdough starter wild yeast",
        "html": "Ganymede largest moon",
        "docx": "Sicilian Defence chess opening",
        "pdf": "honeybee waggle dance",
    }

    def retrieval(self) -> None:
        r = self.report
        for method, query in self.QUERIES.items():

            def run(c: Check, method: str = method, query: str = query) -> None:
                assert self.ds is not None
                self.expect_first(c, self.retrieve(self.ds, query, method), query, "text")

            r.run(f"retrieve[{method}]", run, {"dataset": self.ds, "text document": self.docs.get("text")})
        for ext, query in self.FILE_QUERIES.items():

            def run_file(c: Check, ext: str = ext, query: str = query) -> None:
                assert self.ds is not None
                self.expect_first(c, self.retrieve(self.ds, query, "hybrid_search"), query, ext)

            r.run(f"retrieve[file {ext}]", run_file, {"dataset": self.ds, f"{ext} document": self.docs.get(ext)})

        def top_k(c: Check) -> None:
            assert self.ds is not None
            query = self.QUERIES["semantic_search"]
            records = self.expect_records(c, self.retrieve(self.ds, query, "semantic_search", top_k=1), query)
            c.equal(len(records), 1, "records for top_k=1")

        r.run("retrieve[top_k]", top_k, {"dataset": self.ds})

    # -- enable / disable ----------------------------------------------------------------------------------------

    def status_actions(self) -> None:
        r = self.report
        doc = self.docs.get("txt")
        needs = {"dataset": self.ds, "txt document": doc}
        query = self.FILE_QUERIES["txt"]

        def action(c: Check, name: str) -> None:
            assert self.ds is not None and doc is not None
            body = UpdateDocumentStatusRequestBody(document_ids=[doc])
            builder = UpdateDocumentStatusRequest.builder().dataset_id(self.ds)
            req = builder.action(name).request_body(body).build()  # type: ignore[arg-type]
            resp = self.api.document.update_status(req, self.opt)
            c.saw(resp)
            c.status(resp, 200)
            c.equal(resp.result, "success", "result")

        r.run("document.status[disable]", lambda c: action(c, "disable"), needs)

        def excluded(c: Check) -> None:
            assert self.ds is not None and doc is not None
            records = self.expect_records(c, self.retrieve(self.ds, query, "hybrid_search"), query)
            docs = [rec.segment.document.id for rec in records if rec.segment and rec.segment.document]
            c.expect(doc not in docs, "a disabled document is still retrieved")

        r.run("retrieve[excludes disabled document]", excluded, needs)
        r.run("document.status[enable]", lambda c: action(c, "enable"), needs)

        def enabled(c: Check) -> None:
            assert self.ds is not None and doc is not None
            c.context["client_workaround"] = CLIENT_BUGS["doc_metadata"]
            req = GetDocumentRequest.builder().dataset_id(self.ds).document_id(doc).build()
            resp = self.api.document.get(req, self.opt)
            c.saw(resp)
            c.equal(resp.enabled, True, "enabled")
            c.equal(resp.display_status, "available", "display_status")

            def found() -> tuple[bool, Any]:
                resp = self.retrieve(self.ds or "", query, "hybrid_search")
                records = resp.records or []
                segment = records[0].segment if records else None
                document = segment.document if segment else None
                return document is not None and document.id == doc, resp

            _, resp2 = sc.poll(found, 60, 1.0)
            self.expect_first(c, resp2, query, "txt")

        r.run("retrieve[re-enabled document]", enabled, needs)

    # -- update by text / file -----------------------------------------------------------------------------------

    def updates(self) -> None:
        r = self.report
        doc = self.docs.get("update")
        needs = {"dataset": self.ds, "update-target document": doc}
        old_batch = self.batches.get("update")

        def check_update(c: Check, resp: Any, name: str) -> None:
            c.saw(resp)
            c.status(resp, 200)
            c.require(resp.document is not None, "no `document`")
            c.equal(resp.document.id, doc, "document.id (same document)")
            c.equal(resp.document.name, name, "document.name")
            c.expect(re.match(sc.BATCH_PATTERN, resp.batch or ""), f"batch {resp.batch!r}")
            c.equal(resp.batch, old_batch, "batch (update-* returns the document's existing batch)")
            if resp.batch:
                self.batches["update"] = resp.batch

        def by_text(c: Check) -> None:
            assert self.ds is not None and doc is not None
            body = UpdateDocumentByTextRequestBody(
                name="Update target v2", text=sc.UPDATE_DOC_V2, process_rule=ProcessRule(mode="automatic")
            )
            req = UpdateDocumentByTextRequest.builder().dataset_id(self.ds).document_id(doc).request_body(body).build()
            c.context["client_workaround"] = CLIENT_BUGS["doc_metadata"]
            check_update(c, self.api.document.update_by_text(req, self.opt), "Update target v2")

        r.run("document.update_by_text", by_text, needs)
        r.run("document.indexing_status[after update_by_text]", lambda c: self.wait_indexed(c, "update", 60), needs)

        def reindexed(c: Check, new: str, old: str, query: str) -> None:
            assert self.ds is not None and doc is not None
            text = self.segment_text(c, self.ds, doc)
            c.expect(new in text, f"{new!r} not in the segments")
            c.expect(old not in text, f"{old!r} still in the segments")
            self.expect_first(c, self.retrieve(self.ds, query, "full_text_search"), query, "update")

        r.run(
            "document.update_by_text[re-indexed]",
            lambda c: reindexed(c, "Fresnel", "anemones", "Fresnel lens lighthouse"),
            needs,
        )

        def by_file(c: Check) -> None:
            assert self.ds is not None and doc is not None
            data = UpdateDocumentByFileRequestBodyData(process_rule=ProcessRule(mode="automatic"))
            body = UpdateDocumentByFileRequestBody.builder().data(data).build()
            req = (
                UpdateDocumentByFileRequest.builder()
                .dataset_id(self.ds)
                .document_id(doc)
                .request_body(body)
                .file(io.BytesIO(sc.UPDATE_DOC_V3.encode()), "semaphore.txt")
                .build()
            )
            c.context["client_workaround"] = CLIENT_BUGS["doc_metadata"]
            check_update(c, self.api.document.update_by_file(req, self.opt), "semaphore.txt")

        r.run("document.update_by_file", by_file, needs)
        r.run("document.indexing_status[after update_by_file]", lambda c: self.wait_indexed(c, "update", 60), needs)
        r.run(
            "document.update_by_file[re-indexed]",
            lambda c: reindexed(c, "semaphore", "Fresnel", "semaphore flags"),
            needs,
        )

    # -- metadata (no typed calls in the client) -----------------------------------------------------------------

    def metadata(self) -> None:
        r = self.report
        needs = {"dataset": self.ds, "text document": self.docs.get("text"), "txt document": self.docs.get("txt")}
        fields: dict[str, str] = {}
        paths = {"dataset_id": str(self.ds)}

        def create(c: Check, name: str, kind: str) -> None:
            c.context["client_workaround"] = CLIENT_BUGS["metadata"]
            req = self.raw(HttpMethod.POST, "/v1/datasets/:dataset_id/metadata", paths, {"type": kind, "name": name})
            resp = Transport.execute(self.config, req, unmarshal_as=MetadataField, option=self.opt)
            c.saw(resp)
            c.status(resp, 201)
            c.present(resp, "id name type", "metadata field")
            c.equal(resp.name, name, "name")
            c.equal(resp.type, kind, "type")
            c.require(resp.id, "no metadata id")
            fields[name] = str(resp.id)

        r.run("metadata.create[string]", lambda c: create(c, "category", "string"), needs)
        r.run("metadata.create[number]", lambda c: create(c, "year", "number"), needs)

        def listing(c: Check) -> None:
            req = self.raw(HttpMethod.GET, "/v1/datasets/:dataset_id/metadata", paths)
            resp = Transport.execute(self.config, req, unmarshal_as=MetadataList, option=self.opt)
            c.saw(resp)
            c.status(resp, 200)
            c.present(resp, "doc_metadata built_in_field_enabled", "metadata list")
            got = {m.name: m.type for m in resp.doc_metadata or []}
            c.equal(got, {"category": "string", "year": "number"}, "fields")
            for m in resp.doc_metadata or []:
                c.present(m, "id name type count", f"field {m.name}")

        r.run("metadata.list", listing, needs)
        values = {"text": ("biology", 2021), "txt": ("geology", 2019)}

        def assign(c: Check) -> None:
            c.require("category" in fields and "year" in fields, "metadata fields were not created")
            operations = [
                {
                    "document_id": self.docs[label],
                    "metadata_list": [
                        {"id": fields["category"], "name": "category", "value": category},
                        {"id": fields["year"], "name": "year", "value": year},
                    ],
                }
                for label, (category, year) in values.items()
            ]
            req = self.raw(
                HttpMethod.POST, "/v1/datasets/:dataset_id/documents/metadata", paths, {"operation_data": operations}
            )
            resp = Transport.execute(self.config, req, unmarshal_as=ResultResponse, option=self.opt)
            c.saw(resp)
            c.status(resp, 200)
            c.equal(resp.result, "success", "result")

        r.run("metadata.update_documents", assign, needs)

        def read_back(c: Check) -> None:
            assert self.ds is not None
            c.context["client_workaround"] = CLIENT_BUGS["doc_metadata"]
            req = GetDocumentRequest.builder().dataset_id(self.ds).document_id(self.docs["text"]).build()
            resp = self.api.document.get(req, self.opt)
            c.saw(resp)
            c.status(resp, 200)
            c.require(isinstance(resp.doc_metadata, list), f"doc_metadata is not a list: {resp.doc_metadata!r}")
            got = {m.name: getattr(m, "value", None) for m in resp.doc_metadata or []}
            c.equal(got.get("category"), "biology", "doc_metadata category")
            c.expect(got.get("year") in (2021, 2021.0, "2021"), f"doc_metadata year {got.get('year')!r}")
            for m in resp.doc_metadata or []:
                c.present(m, "id name type", f"doc_metadata {m.name}")

        r.run("document.get[doc_metadata]", read_back, needs)

        def filtered(c: Check, query: str, method: str, conditions: list[dict[str, Any]], expect: str | None) -> None:
            assert self.ds is not None
            c.context["client_workaround"] = CLIENT_BUGS["metadata_filtering"]
            filters = {"logical_operator": "and", "conditions": conditions}
            records = self.expect_records(c, self.retrieve(self.ds, query, method, filters=filters), query)
            docs = {rec.segment.document.id for rec in records if rec.segment and rec.segment.document}
            if expect is None:
                c.equal(records, [], "records when no document matches the conditions")
            else:
                c.require(records, "no records")
                c.equal(docs, {self.docs[expect]}, "documents of the records")

        cond = {"name": "category", "comparison_operator": "is", "value": "geology"}
        r.run(
            "retrieve[metadata: category is geology]",
            lambda c: filtered(c, "energy from the Earth and the Sun", "hybrid_search", [cond], "txt"),
            needs,
        )
        cond_year = {"name": "year", "comparison_operator": ">", "value": 2020}
        r.run(
            "retrieve[metadata: year > 2020]",
            lambda c: filtered(c, "energy", "semantic_search", [cond_year], "text"),
            needs,
        )
        none = {"name": "category", "comparison_operator": "is", "value": "astronomy"}
        r.run(
            "retrieve[metadata: no document matches]",
            lambda c: filtered(c, "energy", "semantic_search", [none], None),
            needs,
        )

    # -- tags ----------------------------------------------------------------------------------------------------

    def tags(self) -> None:
        r = self.report
        name = sc.unique("conf-tag")
        state: dict[str, str] = {}

        def create(c: Check) -> None:
            body = CreateTagRequestBody(name=name, type="knowledge")
            resp = self.api.tag.create(CreateTagRequest.builder().request_body(body).build(), self.opt)
            c.saw(resp)
            c.status(resp, 200)
            c.present(resp, "id name type binding_count", "tag")
            c.equal(resp.name, name, "name")
            c.equal(resp.type, "knowledge", "type")
            c.equal(resp.binding_count, 0, "binding_count")
            c.require(resp.id, "no tag id")
            state["tag"] = str(resp.id)

        r.run("tag.create", create)
        tag_needs = {"tag": state.get("tag"), "dataset": self.ds}

        def find(c: Check) -> Any:
            resp = self.api.tag.list(ListTagsRequest.builder().type("knowledge").build(), self.opt)
            c.saw(resp)
            c.status(resp, 200)
            mine = [t for t in resp.data or [] if t.id == state.get("tag")]
            return mine[0] if mine else None

        def listed(c: Check) -> None:
            tag = find(c)
            c.require(tag is not None, "created tag not listed")
            c.present(tag, "id name type binding_count", "tag")

        r.run("tag.list", listed, tag_needs)

        def bind(c: Check) -> None:
            assert self.ds is not None
            body = BindTagsToDatasetRequestBody(tag_ids=[state["tag"]], target_id=self.ds)
            resp = self.api.tag.bind(BindTagsToDatasetRequest.builder().request_body(body).build(), self.opt)
            c.saw(resp)
            c.status(resp, 204)
            c.expect(resp.success, f"client says failure: {resp.code!r}")

        r.run("tag.bind", bind, tag_needs)

        def dataset_tags(c: Check) -> None:
            assert self.ds is not None
            resp = self.api.tag.get_dataset_tags(GetDatasetTagsRequest.builder().dataset_id(self.ds).build(), self.opt)
            c.saw(resp)
            c.status(resp, 200)
            c.equal([(t.id, t.name) for t in resp.data or []], [(state["tag"], name)], "data")
            c.equal(resp.total, 1, "total")
            ds = self.api.dataset.get(GetDatasetRequest.builder().dataset_id(self.ds).build(), self.opt)
            c.saw(ds, "dataset")
            c.equal([(t.id, t.type) for t in ds.tags or []], [(state["tag"], "knowledge")], "dataset.tags")
            tag = find(c)
            c.equal(tag.binding_count if tag else None, 1, "binding_count in the tag list")

        r.run("tag.dataset_tags", dataset_tags, tag_needs)
        renamed = name + "-renamed"

        def update(c: Check) -> None:
            body = UpdateTagRequestBody(tag_id=state["tag"], name=renamed)
            resp = self.api.tag.update(UpdateTagRequest.builder().request_body(body).build(), self.opt)
            c.saw(resp)
            c.status(resp, 200)
            c.equal(resp.id, state["tag"], "id")
            c.equal(resp.name, renamed, "name")

        r.run("tag.update", update, tag_needs)

        def unbind(c: Check) -> None:
            assert self.ds is not None
            body = UnbindTagsFromDatasetRequestBody(tag_id=state["tag"], target_id=self.ds)
            resp = self.api.tag.unbind(UnbindTagsFromDatasetRequest.builder().request_body(body).build(), self.opt)
            c.saw(resp)
            c.status(resp, 204)
            after = self.api.tag.get_dataset_tags(GetDatasetTagsRequest.builder().dataset_id(self.ds).build(), self.opt)
            c.equal(after.data, [], "dataset tags after unbinding")

        r.run("tag.unbind", unbind, tag_needs)

        def delete(c: Check) -> None:
            body = DeleteTagRequestBody(tag_id=state["tag"])
            resp = self.api.tag.delete(DeleteTagRequest.builder().request_body(body).build(), self.opt)
            c.saw(resp)
            c.status(resp, 204)
            c.expect(find(c) is None, "deleted tag still listed")

        r.run("tag.delete", delete, tag_needs)

    # -- errors and clean-up -------------------------------------------------------------------------------------

    def errors(self) -> None:
        r = self.report

        def missing_dataset(c: Check) -> None:
            resp = self.api.dataset.get(GetDatasetRequest.builder().dataset_id(str(uuid.uuid4())).build(), self.opt)
            self.expect_error(c, resp, 404, "not_found")

        r.run("error.not_found[dataset]", missing_dataset)

        def missing_document(c: Check) -> None:
            assert self.ds is not None
            req = GetDocumentRequest.builder().dataset_id(self.ds).document_id(NEVER).build()
            self.expect_error(c, self.api.document.get(req, self.opt), 404, "not_found")

        r.run("error.not_found[document]", missing_document, {"dataset": self.ds})

        def unauthorized(c: Check, key: str | None) -> None:
            opt = RequestOption.builder().api_key(key).build() if key else RequestOption.builder().build()
            resp = self.api.dataset.list(ListDatasetsRequest.builder().build(), opt)
            self.expect_error(c, resp, 401, "unauthorized")
            header = (resp.raw.headers if resp.raw else {}).get("www-authenticate", "")
            c.expect(header.lower().startswith("bearer"), f"WWW-Authenticate {header!r}")

        r.run("error.unauthorized[wrong key]", lambda c: unauthorized(c, "dataset-" + uuid.uuid4().hex))
        r.run("error.unauthorized[no key]", lambda c: unauthorized(c, None))

    def cleanup(self) -> None:
        r = self.report
        doc = self.docs.get("update")

        def delete_document(c: Check) -> None:
            assert self.ds is not None and doc is not None
            req = DeleteDocumentRequest.builder().dataset_id(self.ds).document_id(doc).build()
            resp = self.api.document.delete(req, self.opt)
            c.saw(resp)
            c.status(resp, 204)
            c.expect(resp.success, f"client says failure: {resp.code!r}")
            again = self.api.document.get(
                GetDocumentRequest.builder().dataset_id(self.ds).document_id(doc).build(), self.opt
            )
            self.expect_error(c, again, 404, "not_found")

        r.run("document.delete", delete_document, {"dataset": self.ds, "update-target document": doc})
        for label, ds in (("", self.ds), ("[parent-child]", self.ds_h)):

            def delete_dataset(c: Check, ds: str | None = ds) -> None:
                assert ds is not None
                resp = self.api.dataset.delete(DeleteDatasetRequest.builder().dataset_id(ds).build(), self.opt)
                c.saw(resp)
                c.status(resp, 204)
                c.expect(resp.success, f"client says failure: {resp.code!r}")
                again = self.api.dataset.get(GetDatasetRequest.builder().dataset_id(ds).build(), self.opt)
                self.expect_error(c, again, 404, "not_found")

            r.run(f"dataset.delete{label}", delete_dataset, {"dataset": ds})

    def run(self) -> None:
        self.datasets()
        self.documents()
        self.listing()
        self.segment_checks()
        self.child_chunks()
        self.retrieval()
        self.status_actions()
        self.updates()
        self.metadata()  # after it, documents carry metadata
        self.tags()
        self.errors()
        self.cleanup()


def main() -> None:
    capture = sc.reroute_client_logger("Dify")
    report = sc.Report(CLIENT, version(CLIENT), capture)
    try:

        def patch(c: Check) -> None:  # before any call: see CLIENT_BUGS["doc_metadata"]
            c.context["client_workaround"] = CLIENT_BUGS["doc_metadata"]
            c.context["patched_models"] = patch_doc_metadata()

        report.run("client_workaround[doc_metadata]", patch)
        Scenario(sc.env("ALEX_BASE_URL"), sc.env("ALEX_DIFY_KEY"), report).run()
    finally:
        report.emit()


if __name__ == "__main__":
    main()
