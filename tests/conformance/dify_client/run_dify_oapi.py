"""Conformance scenario for the PyPI client ``dify-oapi`` (pinned in requirements-dify-oapi.txt), the original of
dify-oapi2: fewer calls, but the ones it has use Dify's deprecated underscore paths (``document/create_by_text``,
``create_by_file``, ``update_by_text``, ``update_by_file``) and ``/hit-testing``, like Dify's own SDKs. Runs inside
the client's own venv (see tests/conformance/test_dify_client.py).

Environment: ALEX_BASE_URL (server root, no /v1), ALEX_DIFY_KEY (a workspace key), DIFY_INDEX_TIMEOUT (default 120).
Every response is parsed by the client into its own pydantic models; the checks look at the parsed values.
"""

from __future__ import annotations

import io
import os
import re
import time
import uuid
from importlib.metadata import version
from typing import Any

import scenario_common as sc
from dify_oapi.api.knowledge_base.v1.model.create_dataset_request import CreateDatasetRequest
from dify_oapi.api.knowledge_base.v1.model.create_dataset_request_body import CreateDatasetRequestBody
from dify_oapi.api.knowledge_base.v1.model.create_document_by_file_request import CreateDocumentByFileRequest
from dify_oapi.api.knowledge_base.v1.model.create_document_by_file_request_body import (
    CreateDocumentByFileRequestBody,
)
from dify_oapi.api.knowledge_base.v1.model.create_document_by_file_request_body_data import (
    CreateDocumentByFileRequestBodyData,
)
from dify_oapi.api.knowledge_base.v1.model.create_document_by_text_request import CreateDocumentByTextRequest
from dify_oapi.api.knowledge_base.v1.model.create_document_by_text_request_body import (
    CreateDocumentByTextRequestBody,
)
from dify_oapi.api.knowledge_base.v1.model.create_segment_request import CreateSegmentRequest
from dify_oapi.api.knowledge_base.v1.model.create_segment_request_body import CreateSegmentRequestBody
from dify_oapi.api.knowledge_base.v1.model.create_segment_request_body_segment import (
    CreateSegmentRequestBodySegment,
)
from dify_oapi.api.knowledge_base.v1.model.delete_dataset_request import DeleteDatasetRequest
from dify_oapi.api.knowledge_base.v1.model.delete_document_request import DeleteDocumentRequest
from dify_oapi.api.knowledge_base.v1.model.delete_segment_request import DeleteSegmentRequest
from dify_oapi.api.knowledge_base.v1.model.document_request_process_rule import DocumentRequestProcessRule
from dify_oapi.api.knowledge_base.v1.model.hit_test_request import HitTestRequest
from dify_oapi.api.knowledge_base.v1.model.hit_test_request_body import HitTestRequestBody
from dify_oapi.api.knowledge_base.v1.model.hit_test_response import HitTestResponse
from dify_oapi.api.knowledge_base.v1.model.index_status_request import IndexStatusRequest
from dify_oapi.api.knowledge_base.v1.model.list_dataset_request import ListDatasetRequest
from dify_oapi.api.knowledge_base.v1.model.list_document_request import ListDocumentRequest
from dify_oapi.api.knowledge_base.v1.model.list_segment_request import ListSegmentRequest
from dify_oapi.api.knowledge_base.v1.model.update_document_by_file_request import UpdateDocumentByFileRequest
from dify_oapi.api.knowledge_base.v1.model.update_document_by_file_request_body import (
    UpdateDocumentByFileRequestBody,
)
from dify_oapi.api.knowledge_base.v1.model.update_document_by_text_request import UpdateDocumentByTextRequest
from dify_oapi.api.knowledge_base.v1.model.update_document_by_text_request_body import (
    UpdateDocumentByTextRequestBody,
)
from dify_oapi.api.knowledge_base.v1.model.update_segment_request import UpdateSegmentRequest
from dify_oapi.api.knowledge_base.v1.model.update_segment_request_body import UpdateSegmentRequestBody
from dify_oapi.api.knowledge_base.v1.model.update_segment_request_body_segment import (
    UpdateSegmentRequestBodySegment,
)
from dify_oapi.client import Client
from dify_oapi.core.model.base_response import BaseResponse
from dify_oapi.core.model.request_option import RequestOption
from scenario_common import Check

CLIENT = "dify-oapi"
AUTOMATIC = DocumentRequestProcessRule(mode="automatic")


class Scenario:
    def __init__(self, base_url: str, key: str, report: sc.Report) -> None:
        self.client = Client.builder().domain(base_url).max_retry_count(1).build()
        self.api = self.client.knowledge_base.v1
        self.api.dataset.config.timeout = 120  # shared Config; the builder has no timeout()
        self.key = key
        self.report = report
        self.index_timeout = float(os.environ.get("DIFY_INDEX_TIMEOUT", "120"))
        self.ds: str | None = None
        self.docs: dict[str, str] = {}
        self.batches: dict[str, str] = {}

    def opt(self, key: str | None = None) -> RequestOption:
        return RequestOption.builder().api_key(key or self.key).build()

    def expect_error(self, c: Check, resp: BaseResponse, status: int, code: str) -> None:
        c.saw(resp)
        c.status(resp, status)
        c.equal(resp.code, code, "error code")
        c.expect(resp.msg, "error `message` missing")

    def hit_test(self, query: str) -> HitTestResponse:
        assert self.ds is not None
        body = HitTestRequestBody.builder().query(query).build()  # no retrieval_model: see the report
        req = HitTestRequest.builder().dataset_id(self.ds).request_body(body).build()
        return self.api.dataset.hit_test(req, self.opt())

    def expect_first(self, c: Check, resp: HitTestResponse, query: str, label: str) -> None:
        c.saw(resp)
        c.status(resp, 200)
        c.equal(resp.query.content if resp.query else None, query, "query.content")
        records = resp.records or []
        c.context["ranking"] = [[r.segment.document.name if r.segment else None, r.score] for r in records]
        c.require(records, "no records")
        for i, rec in enumerate(records):
            c.present(rec, "segment score", f"records[{i}]")
            if rec.segment:
                c.present(rec.segment, "id content document_id position word_count status", f"records[{i}].segment")
                c.present(rec.segment.document, "id name data_source_type", f"records[{i}].segment.document")
        top = records[0].segment
        c.equal(top.document.id if top else None, self.docs[label], f"first record's document ({label})")

    def check_document(self, c: Check, resp: Any, label: str, name: str) -> None:
        c.saw(resp)
        c.status(resp, 200)
        doc = resp.document
        c.require(doc is not None, "no `document`")
        c.present(doc, "id position data_source_type name created_from created_at indexing_status", "document")
        c.present(doc, "enabled archived display_status doc_form", "document")
        c.equal(doc.name, name, "document.name")
        c.equal(doc.created_from, "api", "document.created_from")
        c.expect(re.match(sc.BATCH_PATTERN, resp.batch or ""), f"batch {resp.batch!r} is not 20 digits")
        c.require(doc.id and resp.batch, "no document id or batch")
        self.docs.setdefault(label, doc.id)
        c.equal(doc.id, self.docs[label], "document.id")
        self.batches[label] = resp.batch

    def wait_indexed(self, c: Check, label: str, timeout: float) -> None:
        assert self.ds is not None
        req = IndexStatusRequest.builder().dataset(self.ds).batch(self.batches[label]).build()

        def step() -> tuple[bool, Any]:
            resp = self.api.document.indexing_status(req, self.opt())
            states = [d.indexing_status for d in resp.data or []]
            return resp.code is not None or any(s in ("completed", "error") for s in states), resp

        _, resp = sc.poll(step, timeout)
        c.saw(resp)
        c.status(resp, 200)
        data = resp.data or []
        c.require(data, "`data` is empty or missing")
        c.equal(data[0].id, self.docs[label], "data[0].id")
        c.require(data[0].indexing_status == "completed", f"not completed in {timeout:.0f} s: {data[0]!r}")
        c.equal(data[0].completed_segments, data[0].total_segments, "completed_segments")

    def segment_text(self, c: Check, label: str) -> str:
        assert self.ds is not None
        req = ListSegmentRequest.builder().dataset_id(self.ds).document_id(self.docs[label]).build()
        resp = self.api.segment.list(req, self.opt())
        c.saw(resp, "segments")
        return "\n".join(s.content or "" for s in resp.data or [])

    def run(self) -> None:
        r = self.report
        name = sc.unique("conf-oapi")

        def create_dataset(c: Check) -> str:
            body = CreateDatasetRequestBody.builder().name(name).indexing_technique("high_quality").build()
            resp = self.api.dataset.create(CreateDatasetRequest.builder().request_body(body).build(), self.opt())
            c.saw(resp)
            c.status(resp, 200)
            c.present(resp, "id name permission indexing_technique created_at", "dataset")
            c.equal(resp.name, name, "name")
            c.equal(resp.indexing_technique, "high_quality", "indexing_technique")
            c.require(resp.id, "no dataset id")
            return str(resp.id)

        self.ds = r.run("dataset.create", create_dataset)
        ds = {"dataset": self.ds}

        def list_datasets(c: Check) -> None:
            resp = self.api.dataset.list(ListDatasetRequest.builder().page(1).limit(100).build(), self.opt())
            c.saw(resp)
            c.status(resp, 200)
            c.present(resp, "data has_more limit total page", "list")
            c.expect(self.ds in [d.id for d in resp.data or []], "created dataset not listed")

        r.run("dataset.list", list_datasets, ds)

        def by_text(c: Check) -> None:
            assert self.ds is not None
            body = (
                CreateDocumentByTextRequestBody.builder()
                .name("Photosynthesis notes")
                .text(sc.TEXT_DOC)
                .indexing_technique("high_quality")
                .process_rule(AUTOMATIC)
                .build()
            )
            req = CreateDocumentByTextRequest.builder().dataset_id(self.ds).request_body(body).build()
            self.check_document(c, self.api.document.create_by_text(req, self.opt()), "text", "Photosynthesis notes")

        r.run("document.create_by_text[create_by_text path]", by_text, ds)

        def by_file(c: Check) -> None:
            assert self.ds is not None
            data = CreateDocumentByFileRequestBodyData.builder().indexing_technique("high_quality")
            body = CreateDocumentByFileRequestBody.builder().data(data.process_rule(AUTOMATIC).build()).build()
            req = (
                CreateDocumentByFileRequest.builder()
                .dataset_id(self.ds)
                .request_body(body)
                .file(io.BytesIO(sc.TXT_DOC.encode()), "volcanoes.txt")
                .build()
            )
            self.check_document(c, self.api.document.create_by_file(req, self.opt()), "txt", "volcanoes.txt")

        r.run("document.create_by_file[create_by_file path]", by_file, ds)
        start = time.monotonic()
        for label in list(self.docs):
            left = max(5.0, self.index_timeout - (time.monotonic() - start))

            def indexed(c: Check, label: str = label, left: float = left) -> None:
                self.wait_indexed(c, label, left)

            r.run(f"document.indexing_status[{label}]", indexed, ds)

        def list_documents(c: Check) -> None:
            assert self.ds is not None
            req = ListDocumentRequest.builder().dataset_id(self.ds).page(1).limit(20).build()
            resp = self.api.document.list(req, self.opt())
            c.saw(resp)
            c.status(resp, 200)
            c.present(resp, "data has_more limit total page", "list")
            c.equal(sorted(d.name or "" for d in resp.data or []), ["Photosynthesis notes", "volcanoes.txt"], "names")
            for d in resp.data or []:
                c.equal(d.display_status, "available", f"{d.name}: display_status")

        r.run("document.list", list_documents, ds)
        query = "How do green plants turn sunlight into chemical energy?"
        r.run("hit_testing[/hit-testing]", lambda c: self.expect_first(c, self.hit_test(query), query, "text"), ds)
        doc = self.docs.get("text")
        seg_state: dict[str, str] = {}
        content = "Axolotls can regrow lost limbs, parts of their heart and even parts of their brain."

        def segments(c: Check) -> None:
            assert self.ds is not None and doc is not None
            resp = self.api.segment.list(
                ListSegmentRequest.builder().dataset_id(self.ds).document_id(doc).build(), self.opt()
            )
            c.saw(resp)
            c.status(resp, 200)
            c.require(resp.data, "no segments")
            for s in resp.data or []:
                c.present(s, "id position document_id content word_count tokens status enabled created_at", "segment")
            c.equal(resp.doc_form, "text_model", "doc_form")

        r.run("segment.list", segments, {**ds, "text document": doc})

        def create_segment(c: Check) -> None:
            assert self.ds is not None and doc is not None
            seg = CreateSegmentRequestBodySegment.builder().content(content).keywords(["axolotl"]).build()
            body = CreateSegmentRequestBody.builder().segments([seg]).build()
            req = CreateSegmentRequest.builder().dataset_id(self.ds).document_id(doc).request_body(body).build()
            resp = self.api.segment.create(req, self.opt())
            c.saw(resp)
            c.status(resp, 200)
            data = resp.data or []
            c.require(len(data) == 1, f"expected 1 segment, got {len(data)}")
            c.equal(data[0].content, content, "content")
            c.equal(data[0].status, "completed", "status")
            c.require(data[0].id, "no segment id")
            seg_state["id"] = str(data[0].id)

        r.run("segment.create", create_segment, {**ds, "text document": doc})
        seg_needs = {**ds, "segment": seg_state.get("id")}

        def update_segment(c: Check) -> None:
            assert self.ds is not None and doc is not None
            seg = UpdateSegmentRequestBodySegment.builder().content(content + " Really.").build()
            body = UpdateSegmentRequestBody.builder().segment(seg).build()
            req = (
                UpdateSegmentRequest.builder()
                .dataset_id(self.ds)
                .document_id(doc)
                .segment_id(seg_state["id"])
                .request_body(body)
                .build()
            )
            resp = self.api.segment.update(req, self.opt())
            c.saw(resp)
            c.status(resp, 200)
            c.equal(resp.data.id if resp.data else None, seg_state["id"], "data.id")
            c.equal(resp.data.content if resp.data else None, content + " Really.", "data.content")

        r.run("segment.update", update_segment, seg_needs)

        def delete_segment(c: Check) -> None:
            assert self.ds is not None and doc is not None
            req = (
                DeleteSegmentRequest.builder().dataset_id(self.ds).document_id(doc).segment_id(seg_state["id"]).build()
            )
            resp = self.api.segment.delete(req, self.opt())
            c.saw(resp)
            c.status(resp, 204)
            c.expect(resp.success, f"client says failure: {resp.code!r}")

        r.run("segment.delete", delete_segment, seg_needs)
        target = self.docs.get("txt")

        def update_by_text(c: Check) -> None:
            assert self.ds is not None and target is not None
            body = UpdateDocumentByTextRequestBody.builder().name("Lighthouses").text(sc.UPDATE_DOC_V2).build()
            req = (
                UpdateDocumentByTextRequest.builder().dataset_id(self.ds).document_id(target).request_body(body).build()
            )
            self.check_document(c, self.api.document.update_by_text(req, self.opt()), "txt", "Lighthouses")

        r.run("document.update_by_text[update_by_text path]", update_by_text, {**ds, "txt document": target})
        r.run("document.indexing_status[after update_by_text]", lambda c: self.wait_indexed(c, "txt", 60), ds)
        q2 = "Fresnel lens lighthouse"
        r.run("hit_testing[updated by text]", lambda c: self.expect_first(c, self.hit_test(q2), q2, "txt"), ds)

        def update_by_file(c: Check) -> None:
            assert self.ds is not None and target is not None
            # 0.0.14 sends `name` and `process_rule` (a JSON string) as their own form fields, no `data`
            body = UpdateDocumentByFileRequestBody.builder().name("ignored.txt").process_rule(AUTOMATIC).build()
            req = (
                UpdateDocumentByFileRequest.builder()
                .dataset_id(self.ds)
                .document_id(target)
                .request_body(body)
                .file(io.BytesIO(sc.UPDATE_DOC_V3.encode()), "semaphore.txt")
                .build()
            )
            self.check_document(c, self.api.document.update_by_file(req, self.opt()), "txt", "semaphore.txt")

        r.run("document.update_by_file[update_by_file path]", update_by_file, {**ds, "txt document": target})
        r.run("document.indexing_status[after update_by_file]", lambda c: self.wait_indexed(c, "txt", 60), ds)

        def reindexed(c: Check) -> None:
            text = self.segment_text(c, "txt")
            c.expect("semaphore" in text and "Fresnel" not in text, f"segments not replaced: {text[:300]!r}")

        r.run("document.update_by_file[re-indexed]", reindexed, {**ds, "txt document": target})

        def missing(c: Check) -> None:
            req = ListDocumentRequest.builder().dataset_id(str(uuid.uuid4())).build()
            self.expect_error(c, self.api.document.list(req, self.opt()), 404, "not_found")

        r.run("error.not_found[dataset]", missing)

        def wrong_key(c: Check) -> None:
            resp = self.api.dataset.list(ListDatasetRequest.builder().build(), self.opt("dataset-" + uuid.uuid4().hex))
            self.expect_error(c, resp, 401, "unauthorized")

        r.run("error.unauthorized[wrong key]", wrong_key)

        def delete_document(c: Check) -> None:
            assert self.ds is not None and doc is not None
            req = DeleteDocumentRequest.builder().dataset_id(self.ds).document_id(doc).build()
            resp = self.api.document.delete(req, self.opt())
            c.saw(resp)
            c.status(resp, 204)
            c.expect(resp.success, f"client says failure: {resp.code!r}")

        r.run("document.delete", delete_document, {**ds, "text document": doc})

        def delete_dataset(c: Check) -> None:
            assert self.ds is not None
            resp = self.api.dataset.delete(DeleteDatasetRequest.builder().dataset_id(self.ds).build(), self.opt())
            c.saw(resp)
            c.status(resp, 204)
            c.expect(resp.success, f"client says failure: {resp.code!r}")

        r.run("dataset.delete", delete_dataset, ds)


def main() -> None:
    capture = sc.reroute_client_logger("Dify")
    report = sc.Report(CLIENT, version(CLIENT), capture)
    try:
        Scenario(sc.env("ALEX_BASE_URL"), sc.env("ALEX_DIFY_KEY"), report).run()
    finally:
        report.emit()


if __name__ == "__main__":
    main()
