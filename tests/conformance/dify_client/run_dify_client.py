"""Conformance scenario for Dify's own Python SDK (langgenius/dify ``sdks/python-client``, module ``dify_client``, from
PyPI as ``dify-python-sdk``, pinned in requirements-dify-client.txt): its ``KnowledgeBaseClient`` driven method by
method, every public knowledge method of the class at least once (a method the scenario does not drive is reported
as a failed check, so a new SDK method cannot slip by). Runs inside the client's own venv (see
tests/conformance/test_dify_client.py).

The SDK returns ``httpx.Response`` objects and raises on HTTP errors (the status and JSON body in the exception): the
checks look at status and JSON either way.
The knowledge-pipeline methods are answered as Dify answers a dataset that has no pipeline (400 ``invalid_param``
"Pipeline not found"; the file upload 201).

Environment: ALEX_BASE_URL (server root, no /v1), ALEX_DIFY_KEY (a workspace key), DIFY_INDEX_TIMEOUT (default 120).
"""

from __future__ import annotations

import inspect
import os
import re
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import scenario_common as sc
from dify_client import KnowledgeBaseClient
from dify_client.exceptions import DifyClientError
from scenario_common import Check

CLIENT = "dify-client"
DISTRIBUTION = "dify-python-sdk"  # PyPI's republication of Dify's sdks/python-client
PIPELINE_NOT_FOUND = {"code": "invalid_param", "message": "Pipeline not found", "status": 400}
ROUTE_NOT_FOUND = {
    "code": "not_found",
    "message": "The requested URL was not found on the server. If you entered the URL manually please check your "
    "spelling and try again.",
    "status": 404,
}
# Methods the SDK puts on KnowledgeBaseClient that belong to Dify's chat-app API (``/conversations/...``, answered
# for an app key, not a knowledge key): not part of the Knowledge API, so not driven here.
NOT_KNOWLEDGE = frozenset({"list_conversation_variables_with_pagination", "update_conversation_variable_with_response"})


class Scenario:
    def __init__(self, base_url: str, key: str, report: sc.Report, files: Path) -> None:
        self.base = base_url.rstrip("/") + "/v1"
        self.key = key
        self.report = report
        self.files = files
        self.index_timeout = float(os.environ.get("DIFY_INDEX_TIMEOUT", "120"))
        self.kb = KnowledgeBaseClient(key, base_url=self.base)
        self.driven: set[str] = set()
        self.ids: dict[str, str] = {}

    # -- helpers ----------------------------------------------------------------------------------------------------
    def call(self, c: Check, method: str, *args: Any, **kwargs: Any) -> httpx.Response:
        """``kb.<method>(*args, **kwargs)``, recorded as driven, its status and body kept in the check's context."""
        self.driven.add(method)
        try:
            resp: httpx.Response = getattr(self.kb, method)(*args, **kwargs)
        except DifyClientError as exc:  # this SDK raises on an HTTP error: the answer is in the exception
            if exc.status_code is None:
                raise
            resp = httpx.Response(exc.status_code, json=exc.response)
        c.context[f"{method}:status"] = resp.status_code
        c.context[f"{method}:body"] = resp.text[:1200]
        return resp

    def json_of(self, c: Check, resp: httpx.Response, status: int) -> Any:
        c.require(resp.status_code == status, f"HTTP status: expected {status}, got {resp.status_code}")
        c.require(resp.headers.get("content-type", "").startswith("application/json"), "not JSON")
        return resp.json()

    def empty(self, c: Check, resp: httpx.Response, status: int = 204) -> None:
        c.equal(resp.status_code, status, "HTTP status")
        c.equal(resp.content, b"", "body")

    def file(self, name: str, text: str) -> str:
        path = self.files / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    def document_answer(self, c: Check, body: Any, name: str) -> tuple[str, str]:
        doc = body.get("document") or {}
        c.equal(doc.get("name"), name, "document.name")
        c.expect(re.match(sc.BATCH_PATTERN, body.get("batch") or ""), f"batch {body.get('batch')!r} is not 20 digits")
        c.require(doc.get("id") and body.get("batch"), "no document id or batch")
        return str(doc["id"]), str(body["batch"])

    def wait_indexed(self, c: Check, batch: str, document_id: str) -> None:
        def step() -> tuple[bool, httpx.Response]:
            resp = self.call(c, "batch_indexing_status", batch)
            states = [d.get("indexing_status") for d in (resp.json().get("data") or [])] if resp.is_success else []
            return not resp.is_success or any(s in ("completed", "error") for s in states), resp

        _, resp = sc.poll(step, self.index_timeout)
        data = self.json_of(c, resp, 200).get("data") or []
        c.require([d.get("id") for d in data] == [document_id], f"batch {batch} holds {data!r}")
        c.require(data[0].get("indexing_status") == "completed", f"not completed: {data[0]!r}")

    # -- the story --------------------------------------------------------------------------------------------------
    def run(self) -> None:
        r = self.report
        name = sc.unique("conf-sdk")

        def create_dataset(c: Check) -> str:
            body = self.json_of(c, self.call(c, "create_dataset", name), 200)
            c.equal(body.get("name"), name, "name")
            c.require(body.get("id"), "no dataset id")
            self.kb.dataset_id = str(body["id"])
            return str(body["id"])

        ds = r.run("create_dataset", create_dataset)
        needs = {"dataset": ds}

        def list_datasets(c: Check) -> None:
            body = self.json_of(c, self.call(c, "list_datasets", page=1, page_size=100), 200)
            c.expect(ds in [d.get("id") for d in body.get("data") or []], "created dataset not listed")
            c.equal(body.get("limit"), 100, "limit")

        def get_dataset(c: Check) -> None:
            c.equal(self.json_of(c, self.call(c, "get_dataset"), 200).get("id"), ds, "id")

        def update_dataset(c: Check) -> None:
            body = self.json_of(c, self.call(c, "update_dataset", name=name + "-2", description="notes"), 200)
            c.equal((body.get("name"), body.get("description")), (name + "-2", "notes"), "name, description")

        # Two routes the SDK knows and Dify's server does not serve (no such route: Dify's 404, not a 405)
        def create_dataset_from_template(c: Check) -> None:
            resp = self.call(c, "create_dataset_from_template", "faq", name + "-tpl")
            c.equal(self.json_of(c, resp, 404), ROUTE_NOT_FOUND, "answer")

        def duplicate_dataset(c: Check) -> None:
            c.equal(
                self.json_of(c, self.call(c, "duplicate_dataset", ds, name + "-dup"), 404), ROUTE_NOT_FOUND, "answer"
            )

        for step in (list_datasets, get_dataset, update_dataset, create_dataset_from_template, duplicate_dataset):
            r.run(step.__name__, step, needs)

        def create_document_by_text(c: Check) -> tuple[str, str]:
            body = self.json_of(c, self.call(c, "create_document_by_text", "Photosynthesis", sc.TEXT_DOC), 200)
            doc, batch = self.document_answer(c, body, "Photosynthesis")
            self.wait_indexed(c, batch, doc)
            return doc, batch

        text = r.run("create_document_by_text + batch_indexing_status", create_document_by_text, needs)
        needs_text = {**needs, "text document": text}

        def update_document_by_text(c: Check) -> None:
            assert text is not None
            resp = self.call(c, "update_document_by_text", text[0], "Photosynthesis 2", sc.TEXT_DOC + " Updated.")
            doc, batch = self.document_answer(c, self.json_of(c, resp, 200), "Photosynthesis 2")
            c.equal((doc, batch), text, "the same document, in its existing batch")
            self.wait_indexed(c, batch, doc)

        r.run("update_document_by_text", update_document_by_text, needs_text)

        def create_document_by_file(c: Check) -> tuple[str, str]:
            path = self.file("notes.md", sc.MD_DOC)
            body = self.json_of(c, self.call(c, "create_document_by_file", path), 200)
            doc, batch = self.document_answer(c, body, "notes.md")
            self.wait_indexed(c, batch, doc)
            return doc, batch

        by_file = r.run("create_document_by_file", create_document_by_file, needs)

        def create_document_by_file_replacing(c: Check) -> None:
            assert by_file is not None
            path = self.file("notes-v2.md", sc.MD_DOC + "\n\nA second version.\n")
            resp = self.call(c, "create_document_by_file", path, original_document_id=by_file[0])
            doc, batch = self.document_answer(c, self.json_of(c, resp, 200), "notes-v2.md")
            c.equal((doc, batch), by_file, "the original document, in its existing batch")
            self.wait_indexed(c, by_file[1], by_file[0])  # the SDK's batch_indexing_status on the original batch

        r.run("create_document_by_file[original_document_id]", create_document_by_file_replacing, {"file": by_file})

        def update_document_by_file(c: Check) -> None:
            assert by_file is not None
            path = self.file("notes-v3.txt", sc.TXT_DOC)
            resp = self.call(c, "update_document_by_file", by_file[0], path)
            doc, batch = self.document_answer(c, self.json_of(c, resp, 200), "notes-v3.txt")
            c.equal(doc, by_file[0], "document id")
            self.wait_indexed(c, batch, doc)

        r.run("update_document_by_file", update_document_by_file, {"file": by_file})

        def list_documents(c: Check) -> None:
            body = self.json_of(c, self.call(c, "list_documents", page=1, page_size=20, keyword="Photo"), 200)
            c.equal([d.get("id") for d in body.get("data") or []], [text[0] if text else None], "matches of 'Photo'")

        r.run("list_documents", list_documents, needs_text)
        self.segments(needs_text, text)
        self.metadata(needs_text, text)
        self.tags(needs)
        self.pipeline(needs)

        def batch_update_document_status(c: Check) -> None:
            assert text is not None
            for action in ("disable", "enable"):
                resp = self.call(c, "batch_update_document_status", action, [text[0]])
                c.equal(self.json_of(c, resp, 200), {"result": "success"}, action)

        r.run("batch_update_document_status", batch_update_document_status, needs_text)

        def delete_document(c: Check) -> None:
            assert text is not None
            self.empty(c, self.call(c, "delete_document", text[0]))

        r.run("delete_document", delete_document, needs_text)

        def delete_dataset(c: Check) -> None:
            self.empty(c, self.call(c, "delete_dataset"))
            c.equal(self.call(c, "get_dataset").status_code, 404, "get after delete")

        r.run("delete_dataset", delete_dataset, needs)

        def every_method(c: Check) -> None:
            public = {n for n, f in vars(KnowledgeBaseClient).items() if inspect.isfunction(f) and n[0] != "_"}
            public -= NOT_KNOWLEDGE
            c.context["methods"] = sorted(public)
            c.context["count"] = len(public)
            c.expect(not public - self.driven, f"methods not driven: {sorted(public - self.driven)}")

        r.run("every KnowledgeBaseClient method driven", every_method)

    def segments(self, needs: dict[str, object], text: tuple[str, str] | None) -> None:
        r = self.report

        def add_segments(c: Check) -> str:
            assert text is not None
            segments = [{"content": "Stomata regulate the exchange of gases.", "keywords": ["stomata"]}]
            body = self.json_of(c, self.call(c, "add_segments", text[0], segments), 200)
            data = body.get("data") or []
            c.require(len(data) == 1 and data[0].get("id"), f"data: {data!r}")
            return str(data[0]["id"])

        seg = r.run("add_segments", add_segments, needs)

        def query_segments(c: Check) -> None:
            assert text is not None
            body = self.json_of(c, self.call(c, "query_segments", text[0], keyword="Stomata"), 200)
            c.equal([s.get("id") for s in body.get("data") or []], [seg], "matches")

        def update_document_segment(c: Check) -> None:
            assert text is not None
            data = {"content": "Stomata regulate the exchange of gases in leaves.", "enabled": True}
            body = self.json_of(c, self.call(c, "update_document_segment", text[0], seg, data), 200)
            c.equal((body.get("data") or {}).get("content"), data["content"], "content")

        def hit_testing(c: Check) -> None:
            model = {"search_method": "semantic_search", "reranking_enable": False, "top_k": 3,
                     "score_threshold_enabled": False}  # fmt: skip
            body = self.json_of(c, self.call(c, "hit_testing", "what regulates gases", retrieval_model=model), 200)
            c.equal((body.get("query") or {}).get("content"), "what regulates gases", "query.content")
            c.expect(body.get("records"), "no records")

        def delete_document_segment(c: Check) -> None:
            assert text is not None
            self.empty(c, self.call(c, "delete_document_segment", text[0], seg))

        for step in (query_segments, update_document_segment, hit_testing, delete_document_segment):
            r.run(step.__name__, step, {**needs, "segment": seg})

    def metadata(self, needs: dict[str, object], text: tuple[str, str] | None) -> None:
        r = self.report

        def create_dataset_metadata(c: Check) -> str:
            body = self.json_of(c, self.call(c, "create_dataset_metadata", {"type": "string", "name": "author"}), 201)
            c.equal((body.get("name"), body.get("type")), ("author", "string"), "name, type")
            return str(body.get("id"))

        field = r.run("create_dataset_metadata", create_dataset_metadata, needs)
        with_field = {**needs, "field": field}

        def update_dataset_metadata(c: Check) -> None:
            body = self.json_of(c, self.call(c, "update_dataset_metadata", field, {"name": "writer"}), 200)
            c.equal(body.get("name"), "writer", "name")

        def get_dataset_metadata(c: Check) -> None:
            body = self.json_of(c, self.call(c, "get_dataset_metadata"), 200)
            c.equal([f.get("name") for f in body.get("doc_metadata") or []], ["writer"], "fields")

        def get_built_in_metadata(c: Check) -> None:
            fields = self.json_of(c, self.call(c, "get_built_in_metadata"), 200).get("fields") or []
            c.expect({"document_name", "source"} <= {f.get("name") for f in fields}, f"fields: {fields!r}")

        def manage_built_in_metadata(c: Check) -> None:
            body = self.json_of(c, self.call(c, "manage_built_in_metadata", "enable"), 200)
            c.equal(body, {"result": "success"}, "answer")
            c.equal(self.kb.get_dataset_metadata().json().get("built_in_field_enabled"), True, "enabled")

        def update_documents_metadata(c: Check) -> None:
            assert text is not None
            ops = [{"document_id": text[0], "metadata_list": [{"id": field, "name": "writer", "value": "Ada"}]}]
            c.equal(self.json_of(c, self.call(c, "update_documents_metadata", ops), 200), {"result": "success"}, "")
            listed = self.kb.get_dataset_metadata().json().get("doc_metadata") or []
            c.equal([f.get("count") for f in listed], [1], "documents with the field")

        for step in (update_dataset_metadata, get_dataset_metadata, get_built_in_metadata, manage_built_in_metadata,
                     update_documents_metadata):  # fmt: skip
            r.run(step.__name__, step, with_field)

    def tags(self, needs: dict[str, object]) -> None:
        r = self.report
        made = httpx.post(f"{self.base}/datasets/tags", json={"name": sc.unique("tag")},
                          headers={"Authorization": f"Bearer {self.key}"}, timeout=30)  # fmt: skip
        tag = made.json().get("id") if made.status_code == 200 else None  # the SDK has no create-tag method

        def list_dataset_tags(c: Check) -> None:
            body = self.json_of(c, self.call(c, "list_dataset_tags"), 200)
            c.expect(tag in [t.get("id") for t in body], f"tag {tag} not listed")

        def bind_dataset_tags(c: Check) -> None:
            self.empty(c, self.call(c, "bind_dataset_tags", [tag]))

        def get_dataset_tags(c: Check) -> None:
            body = self.json_of(c, self.call(c, "get_dataset_tags"), 200)
            c.equal([t.get("id") for t in body.get("data") or []], [tag], "bound tags")

        def unbind_dataset_tag(c: Check) -> None:
            self.empty(c, self.call(c, "unbind_dataset_tag", tag))
            c.equal(self.kb.get_dataset_tags().json().get("data"), [], "bound tags after unbinding")

        for step in (list_dataset_tags, bind_dataset_tags, get_dataset_tags, unbind_dataset_tag):
            r.run(step.__name__, step, {**needs, "tag": tag})

    def pipeline(self, needs: dict[str, object]) -> None:
        r = self.report

        def get_datasource_plugins(c: Check) -> None:
            c.equal(self.json_of(c, self.call(c, "get_datasource_plugins"), 400), PIPELINE_NOT_FOUND, "answer")

        def run_datasource_node(c: Check) -> None:
            resp = self.call(c, "run_datasource_node", "node-1", {}, "local_file")
            c.equal(self.json_of(c, resp, 400), PIPELINE_NOT_FOUND, "answer")

        def run_rag_pipeline(c: Check) -> None:
            resp = self.call(c, "run_rag_pipeline", {}, "local_file", [{"reference": "x"}], "node-1")
            c.equal(self.json_of(c, resp, 400), PIPELINE_NOT_FOUND, "answer")

        def upload_pipeline_file(c: Check) -> None:
            body = self.json_of(c, self.call(c, "upload_pipeline_file", self.file("pipe.md", sc.MD_DOC)), 201)
            c.equal((body.get("name"), body.get("extension")), ("pipe.md", "md"), "name, extension")
            c.equal(body.get("size"), len(sc.MD_DOC.encode()), "size")
            c.expect(body.get("id"), "no id")

        for step in (get_datasource_plugins, run_datasource_node, run_rag_pipeline, upload_pipeline_file):
            r.run(step.__name__, step, needs)


def main() -> None:
    report = sc.Report(CLIENT, version(DISTRIBUTION))
    try:
        with tempfile.TemporaryDirectory() as files:
            Scenario(sc.env("ALEX_BASE_URL"), sc.env("ALEX_DIFY_KEY"), report, Path(files)).run()
    finally:
        report.emit()


if __name__ == "__main__":
    main()
