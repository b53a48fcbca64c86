"""Dify dialect: documents and their indexing pipeline (dify-behaviour.md §1, §2.2, §3, §8): create/update by text and
by file (both path spellings), Dify's upload errors, the pipeline states seen through indexing-status, listing,
detail, delete and batch status actions, with their effect on retrieval. Segments and child chunks:
test_dify_segments.py. The in-process app runs no workers: the tests drive the queue with ``pool(0).drain()``."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from alexandria.config import Settings
from alexandria.services.core import Core
from tests.api.dify_helpers import assert_dify_error, auth, create_dataset, dataset_of, dify, workspace_key  # noqa: F401

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dify"), pytest.mark.backends("sqlite", "postgres")]

DOCUMENT_KEYS = {
    "id", "position", "data_source_type", "data_source_info", "data_source_detail_dict", "dataset_process_rule_id",
    "name", "created_from", "created_by", "created_at", "tokens", "indexing_status", "error", "enabled",
    "disabled_at", "disabled_by", "archived", "display_status", "word_count", "hit_count", "doc_form",
    "doc_metadata", "summary_index_status", "need_summary",
}  # fmt: skip
DETAIL_WITHOUT_KEYS = {
    "id", "position", "data_source_type", "data_source_info", "dataset_process_rule_id", "dataset_process_rule",
    "document_process_rule", "name", "created_from", "created_by", "created_at", "tokens", "indexing_status",
    "completed_at", "updated_at", "indexing_latency", "error", "enabled", "disabled_at", "disabled_by", "archived",
    "segment_count", "average_segment_length", "hit_count", "display_status", "doc_form", "doc_language",
    "summary_index_status", "need_summary",
}  # fmt: skip
DETAIL_ALL_KEYS = DETAIL_WITHOUT_KEYS | {"doc_type", "doc_metadata"}
DETAIL_ONLY_KEYS = {"id", "doc_type", "doc_metadata"}
UPLOAD_FILE_KEYS = {"id", "name", "size", "extension", "mime_type", "created_by", "created_at"}
INDEXING_KEYS = {
    "id", "indexing_status", "processing_started_at", "parsing_completed_at", "cleaning_completed_at",
    "splitting_completed_at", "completed_at", "paused_at", "error", "stopped_at", "completed_segments",
    "total_segments",
}  # fmt: skip
TIMESTAMPS = ("processing_started_at", "parsing_completed_at", "cleaning_completed_at", "splitting_completed_at",
              "completed_at", "paused_at", "stopped_at")  # fmt: skip
BATCH = re.compile(r"^\d{20}$")
FULL_TEXT = {
    "search_method": "full_text_search", "reranking_enable": False, "top_k": 5, "score_threshold_enabled": False
}  # fmt: skip
UPLOAD_LIMIT_MB = 0.1
HIERARCHICAL = {
    "mode": "hierarchical",
    "rules": {
        "pre_processing_rules": [],
        "segmentation": {"separator": "\n\n", "max_tokens": 500},
        "parent_mode": "paragraph",
        "subchunk_segmentation": {"separator": "\n", "max_tokens": 100},
    },
}


def custom_rule(separator: str, max_tokens: int) -> dict[str, Any]:
    """A custom process rule: pieces split on ``separator``, each its own segment when at most ``max_tokens``."""
    segmentation = {"separator": separator, "max_tokens": max_tokens}
    return {"mode": "custom", "rules": {"pre_processing_rules": [], "segmentation": segmentation}}


PARAGRAPHS = custom_rule("\n\n", 100)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Room for generated office files in bodies and texts, and a small upload limit to hit (on the backend under
    test: conftest's ``settings``)."""
    return settings.model_copy(
        update={"max_document_mb": 0.5, "max_body_mb": 2, "upload_file_size_limit_mb": UPLOAD_LIMIT_MB}
    )


@dataclass
class KB:
    key: str
    id: str

    @property
    def h(self) -> dict[str, str]:
        return auth(self.key)

    @property
    def url(self) -> str:
        return f"/v1/datasets/{self.id}"


@pytest.fixture
async def kb(core: Core, client: httpx.AsyncClient) -> KB:
    key = workspace_key(core, "w1")
    return KB(key, (await create_dataset(client, key, "kb"))["id"])


def drain(core: Core) -> int:
    return core.jobs.pool(0).drain()


async def create_text(
    client: httpx.AsyncClient, kb: KB, name: str, text: str, *, path: str = "create-by-text", **body: Any
) -> httpx.Response:
    payload = {"name": name, "text": text, "indexing_technique": "high_quality", **body}
    return await client.post(f"{kb.url}/document/{path}", json=payload, headers=kb.h)


async def new_doc(client: httpx.AsyncClient, kb: KB, name: str, text: str, **body: Any) -> dict[str, Any]:
    resp = await create_text(client, kb, name, text, **body)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def upload(
    client: httpx.AsyncClient, kb: KB, path: str, files: Any, data: dict[str, Any] | None = None, method: str = "POST"
) -> httpx.Response:
    form = {"data": json.dumps(data)} if data is not None else None
    return await client.request(method, f"{kb.url}/{path}", files=files, data=form, headers=kb.h)


async def get_doc(client: httpx.AsyncClient, kb: KB, doc_id: str, metadata: str = "all") -> dict[str, Any]:
    resp = await client.get(f"{kb.url}/documents/{doc_id}", params={"metadata": metadata}, headers=kb.h)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def indexing(client: httpx.AsyncClient, kb: KB, batch: str) -> list[dict[str, Any]]:
    resp = await client.get(f"{kb.url}/documents/{batch}/indexing-status", headers=kb.h)
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"data"}
    items: list[dict[str, Any]] = resp.json()["data"]
    for item in items:
        assert set(item) == INDEXING_KEYS
        assert all(item[k] is None or type(item[k]) is int for k in TIMESTAMPS), item
    return items


async def segments(client: httpx.AsyncClient, kb: KB, doc_id: str) -> list[dict[str, Any]]:
    resp = await client.get(f"{kb.url}/documents/{doc_id}/segments", params={"limit": 100}, headers=kb.h)
    assert resp.status_code == 200, resp.text
    out: list[dict[str, Any]] = resp.json()["data"]
    return out


async def retrieved(client: httpx.AsyncClient, kb: KB, query: str) -> list[str]:
    """Contents of the segments that Dify's retrieve finds for a keyword query."""
    resp = await client.post(f"{kb.url}/retrieve", json={"query": query, "retrieval_model": FULL_TEXT}, headers=kb.h)
    assert resp.status_code == 200, resp.text
    return [r["segment"]["content"] for r in resp.json()["records"]]


async def list_docs(client: httpx.AsyncClient, kb: KB, **params: Any) -> dict[str, Any]:
    resp = await client.get(f"{kb.url}/documents", params=params, headers=kb.h)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert set(body) == {"data", "has_more", "limit", "total", "page"}
    assert all(set(d) == DOCUMENT_KEYS for d in body["data"])
    return body


async def set_status(client: httpx.AsyncClient, kb: KB, action: str, ids: list[str]) -> httpx.Response:
    return await client.patch(f"{kb.url}/documents/status/{action}", json={"document_ids": ids}, headers=kb.h)


# --- create by text and the pipeline ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["create-by-text", "create_by_text"])
async def test_create_by_text_shape_and_pipeline(client: httpx.AsyncClient, core: Core, kb: KB, path: str) -> None:
    text = "Aardvarks dig burrows at night.\n\nBadgers guard their setts.\n\nCapybaras swim in rivers."
    resp = await create_text(client, kb, "Animals", text, path=path, process_rule=PARAGRAPHS)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"document", "batch"}
    assert BATCH.match(body["batch"])
    doc = body["document"]
    assert set(doc) == DOCUMENT_KEYS
    assert doc["name"] == "Animals"  # no ".txt" appended
    assert (doc["indexing_status"], doc["display_status"]) == ("waiting", "queuing")
    assert (doc["tokens"], doc["word_count"], doc["error"]) == (0, 0, None)
    assert (doc["enabled"], doc["archived"], doc["doc_form"], doc["created_from"]) == (True, False, "text_model", "api")
    assert doc["data_source_type"] == "upload_file" and type(doc["created_at"]) is int
    file = doc["data_source_detail_dict"]["upload_file"]
    assert set(file) == UPLOAD_FILE_KEYS
    assert (file["name"], file["extension"], file["mime_type"]) == ("Animals", "txt", "text/plain")
    assert doc["data_source_info"] == {"upload_file_id": file["id"]}

    [before] = await indexing(client, kb, body["batch"])
    assert before["id"] == doc["id"] and before["indexing_status"] == "waiting"
    assert all(before[k] is None for k in TIMESTAMPS)
    assert (before["completed_segments"], before["total_segments"]) == (0, 0)
    assert await retrieved(client, kb, "badgers") == []  # nothing indexed yet

    assert drain(core) == 1
    [after] = await indexing(client, kb, body["batch"])
    assert after["indexing_status"] == "completed" and after["error"] is None
    for k in ("processing_started_at", "parsing_completed_at", "cleaning_completed_at", "splitting_completed_at"):
        assert type(after[k]) is int and after[k] <= after["completed_at"]
    assert after["paused_at"] is None and after["stopped_at"] is None
    assert (after["completed_segments"], after["total_segments"]) == (3, 3)

    segs = await segments(client, kb, doc["id"])
    assert [s["content"] for s in segs] == [
        "Aardvarks dig burrows at night.",
        "Badgers guard their setts.",
        "Capybaras swim in rivers.",
    ]
    detail = await get_doc(client, kb, doc["id"])
    assert (detail["indexing_status"], detail["display_status"]) == ("completed", "available")
    listed = (await list_docs(client, kb))["data"][0]
    assert listed["word_count"] == sum(len(s["content"]) for s in segs)  # characters, after splitting
    assert listed["tokens"] > 0 and listed["tokens"] == sum(s["tokens"] for s in segs)
    assert detail["segment_count"] == 3 and detail["average_segment_length"] == listed["word_count"] // 3
    assert await retrieved(client, kb, "badgers") == ["Badgers guard their setts."]


async def test_same_name_reuses_the_document_and_updates_keep_the_batch(
    client: httpx.AsyncClient, core: Core, kb: KB
) -> None:
    first = await new_doc(client, kb, "notes", "ocelots climb trees")
    drain(core)
    again = await new_doc(client, kb, "notes", "pelicans scoop fish")
    assert again["document"]["id"] == first["document"]["id"]  # same id, re-queued under the new batch
    assert again["document"]["indexing_status"] == "waiting" and BATCH.match(again["batch"])
    assert (await list_docs(client, kb))["total"] == 1
    [state] = await indexing(client, kb, again["batch"])
    assert state["id"] == first["document"]["id"] and state["indexing_status"] == "waiting"
    drain(core)
    assert await retrieved(client, kb, "pelicans") == ["pelicans scoop fish"]
    assert await retrieved(client, kb, "ocelots") == []

    doc_id = first["document"]["id"]
    for spelling, word in (("update-by-text", "quokkas"), ("update_by_text", "ravens")):
        resp = await client.post(
            f"{kb.url}/documents/{doc_id}/{spelling}", json={"name": "notes", "text": f"{word} smile"}, headers=kb.h
        )
        assert resp.status_code == 200, resp.text
        assert set(resp.json()) == {"document", "batch"} and set(resp.json()["document"]) == DOCUMENT_KEYS
        assert resp.json()["batch"] == again["batch"]  # the document's existing batch, not a new one
        assert resp.json()["document"]["indexing_status"] == "waiting"
        drain(core)
        assert await retrieved(client, kb, word) == [f"{word} smile"]
    assert await retrieved(client, kb, "pelicans") == []
    assert (await indexing(client, kb, again["batch"]))[0]["indexing_status"] == "completed"


async def test_update_by_text_errors(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    created = await new_doc(client, kb, "doc", "some text")
    doc_id = created["document"]["id"]
    url = f"{kb.url}/documents/{doc_id}/update-by-text"
    resp = await client.post(url, json={"name": "doc", "text": "new"}, headers=kb.h)
    assert_dify_error(resp, 400, "invalid_param", "Document is not available")  # still queuing
    drain(core)
    resp = await client.post(url, json={"text": "new"}, headers=kb.h)
    assert_dify_error(resp, 400, "invalid_param", "name is required when text is provided")
    await set_status(client, kb, "disable", [doc_id])
    resp = await client.post(url, json={"name": "doc", "text": "new"}, headers=kb.h)
    assert_dify_error(resp, 400, "invalid_param", "Document is not available")
    missing = "00000000-0000-4000-8000-000000000000"
    resp = await client.post(f"{kb.url}/documents/{missing}/update-by-text", json={"name": "x"}, headers=kb.h)
    assert_dify_error(resp, 404, "not_found")


async def test_create_by_text_validation(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    url = f"{kb.url}/document/create-by-text"
    resp = await client.post(url, json={"text": "no name", "indexing_technique": "high_quality"}, headers=kb.h)
    assert_dify_error(resp, 400, "invalid_param")
    resp = await client.post(url, json={"name": "no text", "indexing_technique": "high_quality"}, headers=kb.h)
    assert_dify_error(resp, 400, "invalid_param")
    resp = await client.post(url, content=b"", headers=kb.h)
    assert_dify_error(resp, 400, "bad_request", "Invalid JSON payload received or JSON payload is empty.")
    resp = await client.post(url, json={"name": "a", "text": "b"}, headers=kb.h)  # the dataset has no technique yet
    assert_dify_error(resp, 400, "invalid_param", "indexing_technique is required.")
    resp = await create_text(client, kb, "a", "b", doc_form="table_model")
    assert_dify_error(resp, 400, "invalid_param", "Invalid doc_form.")
    resp = await create_text(client, kb, "a", "b", process_rule={"mode": "custom"})
    assert_dify_error(resp, 400, "invalid_param", "Process rule rules is required")
    assert (await list_docs(client, kb))["total"] == 0  # nothing was created by the refused calls

    await new_doc(client, kb, "first", "fixes text_model and high_quality for the dataset")
    resp = await client.post(url, json={"name": "second", "text": "inherits the technique"}, headers=kb.h)
    assert resp.status_code == 200, resp.text
    resp = await create_text(client, kb, "third", "x", doc_form="hierarchical_model", process_rule=HIERARCHICAL)
    assert_dify_error(resp, 400, "invalid_param", "doc_form is different from the dataset doc_form.")


async def test_doc_form_defaults_differ_between_text_and_file(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    await new_doc(client, kb, "parent", "a\nb", doc_form="hierarchical_model", process_rule=HIERARCHICAL)
    # create-by-text defaults doc_form to text_model, not to the dataset's: refused on a hierarchical dataset
    resp = await create_text(client, kb, "plain", "c\nd")
    assert_dify_error(resp, 400, "invalid_param", "doc_form is different from the dataset doc_form.")
    # create-by-file defaults to the dataset's doc_form (and reuses its latest process rule)
    resp = await upload(client, kb, "document/create-by-file", {"file": ("f.txt", b"line e\nline f", "text/plain")}, {})
    assert resp.status_code == 200, resp.text
    assert resp.json()["document"]["doc_form"] == "hierarchical_model"
    drain(core)
    [seg] = await segments(client, kb, resp.json()["document"]["id"])
    assert [c["content"] for c in seg["child_chunks"]] == ["line e", "line f"]


async def test_segment_length_out_of_bounds_ends_in_error(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    rule = custom_rule("\n", 10)
    created = await new_doc(client, kb, "tiny", "line one\nline two", process_rule=rule)  # accepted: checked async
    drain(core)
    [state] = await indexing(client, kb, created["batch"])
    assert state["indexing_status"] == "error"
    assert state["error"] == "Custom segment length should be between 50 and 4000."
    assert type(state["stopped_at"]) is int and state["completed_at"] is None
    detail = await get_doc(client, kb, created["document"]["id"])
    assert (detail["display_status"], detail["error"]) == ("error", state["error"])
    assert (await list_docs(client, kb, status="error"))["total"] == 1


async def test_unknown_batch(client: httpx.AsyncClient, kb: KB) -> None:
    resp = await client.get(f"{kb.url}/documents/20990101000000123456/indexing-status", headers=kb.h)
    assert_dify_error(resp, 404, "not_found", "Documents not found.")
    batch = (await new_doc(client, kb, "elsewhere", "text"))["batch"]
    other = (await create_dataset(client, kb.key, "other kb"))["id"]
    resp = await client.get(f"/v1/datasets/{other}/documents/{batch}/indexing-status", headers=kb.h)
    assert_dify_error(resp, 404, "not_found", "Documents not found.")  # a batch is looked up in its dataset


# --- create by file ----------------------------------------------------------------------------------------------
def _docx(word: str) -> bytes:
    import docx

    d = docx.Document()
    d.add_heading("Field notes", level=1)
    d.add_paragraph(f"The {word} was seen near the river.")
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


def _xlsx(word: str) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    sheet = wb.active
    assert sheet is not None
    sheet.append(["animal", "habitat"])
    sheet.append([word, "forest"])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _pdf(word: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(text=f"The {word} sleeps in a tree.")
    return bytes(pdf.output())


FILES: dict[str, tuple[str, Any]] = {
    "txt": ("text/plain", lambda w: f"A {w} crossed the road.\n".encode()),
    "md": ("text/markdown", lambda w: f"# Sightings\n\nA **{w}** was seen.\n".encode()),
    "html": (
        "text/html",
        lambda w: f"<html><head><script>var hidden=1;</script></head><body><p>A {w} ran.</p></body></html>".encode(),
    ),
    "csv": ("text/csv", lambda w: f"animal,habitat\n{w},savanna\n".encode()),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", _docx),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", _xlsx),
    "pdf": ("application/pdf", _pdf),
}


@pytest.mark.parametrize("ext", list(FILES))
async def test_create_by_file_parses_the_file(client: httpx.AsyncClient, core: Core, kb: KB, ext: str) -> None:
    mime, make = FILES[ext]
    word = f"wombat{ext}"
    data = make(word)
    path = "document/create-by-file" if ext in ("txt", "html", "docx", "pdf") else "document/create_by_file"
    resp = await upload(
        client,
        kb,
        path,
        {"file": (f"sightings.{ext}", data, mime)},
        {"indexing_technique": "high_quality", "process_rule": {"mode": "automatic"}},
    )
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"document", "batch"} and BATCH.match(resp.json()["batch"])
    doc = resp.json()["document"]
    assert set(doc) == DOCUMENT_KEYS
    assert doc["name"] == f"sightings.{ext}" and doc["indexing_status"] == "waiting"
    file = doc["data_source_detail_dict"]["upload_file"]
    assert (file["name"], file["extension"], file["mime_type"], file["size"]) == (
        f"sightings.{ext}",
        ext,
        mime,
        len(data),
    )
    assert doc["data_source_info"] == {"upload_file_id": file["id"]}
    assert drain(core) == 1
    [state] = await indexing(client, kb, resp.json()["batch"])
    assert state["indexing_status"] == "completed", state
    content = "\n".join(s["content"] for s in await segments(client, kb, doc["id"]))
    assert word in content
    assert "<p>" not in content and "hidden" not in content  # markup and scripts are not text
    detail = await get_doc(client, kb, doc["id"])
    assert set(detail["data_source_info"]) == {"upload_file"}  # the detail dict, not the list's upload_file_id
    assert set(detail["data_source_info"]["upload_file"]) == UPLOAD_FILE_KEYS
    assert detail["data_source_info"]["upload_file"]["id"] == file["id"]
    assert any(word in c for c in await retrieved(client, kb, word))


async def test_upload_errors(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    opts = {"indexing_technique": "high_quality"}
    create = "document/create-by-file"
    resp = await upload(client, kb, create, None, opts)  # multipart with `data` only
    assert_dify_error(resp, 400, "no_file_uploaded", "Please upload your file.")
    resp = await client.post(f"{kb.url}/{create}", json=opts, headers=kb.h)
    assert_dify_error(resp, 400, "no_file_uploaded", "Please upload your file.")
    two = [("file", ("a.txt", b"one", "text/plain")), ("file", ("b.txt", b"two", "text/plain"))]
    resp = await upload(client, kb, create, two, opts)
    assert_dify_error(resp, 400, "too_many_files", "Only one file is allowed.")
    raw = b'--B\r\nContent-Disposition: form-data; name="file"; filename=""\r\n\r\nabc\r\n--B--\r\n'
    resp = await client.post(
        f"{kb.url}/{create}", content=raw, headers={**kb.h, "Content-Type": "multipart/form-data; boundary=B"}
    )
    assert_dify_error(resp, 400, "filename_not_exists_error", "The specified filename does not exist.")
    # create-by-file lets the upload service's errors through as 400 invalid_param
    resp = await upload(client, kb, create, {"file": ("tool.exe", b"MZ\x90\x00", "application/octet-stream")}, opts)
    assert_dify_error(resp, 400, "invalid_param")
    big = b"x" * int(UPLOAD_LIMIT_MB * 1024 * 1024 + 1)
    resp = await upload(client, kb, create, {"file": ("big.txt", big, "text/plain")}, opts)
    assert_dify_error(resp, 400, "invalid_param")
    assert (await list_docs(client, kb))["total"] == 0

    resp = await upload(client, kb, create, {"file": ("ok.txt", b"fine text", "text/plain")}, opts)
    assert resp.status_code == 200, resp.text
    doc_id = resp.json()["document"]["id"]
    drain(core)
    # update-by-file (both spellings) and PATCH catch them: 415 / 413
    for path, method in (
        (f"documents/{doc_id}/update-by-file", "POST"),
        (f"documents/{doc_id}/update_by_file", "POST"),
        (f"documents/{doc_id}", "PATCH"),
    ):
        resp = await upload(client, kb, path, {"file": ("tool.exe", b"MZ", "application/x-msdownload")}, method=method)
        assert_dify_error(resp, 415, "unsupported_file_type")
        resp = await upload(client, kb, path, {"file": ("big.txt", big, "text/plain")}, method=method)
        assert_dify_error(resp, 413, "file_too_large")
        resp = await upload(client, kb, path, two, method=method)
        assert_dify_error(resp, 400, "too_many_files", "Only one file is allowed.")
    assert (await get_doc(client, kb, doc_id))["display_status"] == "available"  # untouched


async def test_update_by_file_replaces_the_content(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    opts = {"indexing_technique": "high_quality"}
    resp = await upload(client, kb, "document/create-by-file", {"file": ("a.txt", b"jackals howl", "text/plain")}, opts)
    created = resp.json()
    doc_id = created["document"]["id"]
    drain(core)
    resp = await upload(
        client,
        kb,
        f"documents/{doc_id}/update-by-file",
        {"file": ("b.md", b"# Kestrels\n\nkestrels hover", "text/markdown")},
        {"name": "ignored name"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["batch"] == created["batch"]
    assert resp.json()["document"]["id"] == doc_id and resp.json()["document"]["name"] == "b.md"  # the file's name
    drain(core)
    assert await retrieved(client, kb, "jackals") == []
    assert any("kestrels hover" in c for c in await retrieved(client, kb, "kestrels"))
    resp = await upload(
        client, kb, f"documents/{doc_id}", {"file": ("c.txt", b"lemurs leap", "text/plain")}, method="PATCH"
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["document"]["name"] == "c.txt" and resp.json()["batch"] == created["batch"]
    drain(core)
    assert await retrieved(client, kb, "lemurs") == ["lemurs leap"]


async def test_corrupt_pdf_ends_in_error(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    resp = await upload(
        client,
        kb,
        "document/create-by-file",
        {"file": ("broken.pdf", b"%PDF-1.4\n1 0 obj <<", "application/pdf")},
        {"indexing_technique": "high_quality"},
    )
    assert resp.status_code == 200, resp.text
    drain(core)
    [state] = await indexing(client, kb, resp.json()["batch"])
    assert state["indexing_status"] == "error", state  # never left parsing/indexing
    assert isinstance(state["error"], str) and state["error"]
    assert type(state["stopped_at"]) is int
    detail = await get_doc(client, kb, resp.json()["document"]["id"])
    assert (detail["display_status"], detail["error"]) == ("error", state["error"])


# --- list, get, delete -------------------------------------------------------------------------------------------
async def test_list_documents_pages_keyword_and_status(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    ids = {}
    for name in ("alpha report", "beta report", "gamma notes", "delta notes", "epsilon notes"):
        ids[name] = (await new_doc(client, kb, name, f"{name} text"))["document"]["id"]
    drain(core)
    bad = custom_rule("\n", 1)
    ids["zeta failed"] = (await new_doc(client, kb, "zeta failed", "z", process_rule=bad))["document"]["id"]
    drain(core)
    ids["eta queued"] = (await new_doc(client, kb, "eta queued", "not drained"))["document"]["id"]
    await set_status(client, kb, "disable", [ids["beta report"]])
    await set_status(client, kb, "archive", [ids["gamma notes"]])

    everything = await list_docs(client, kb)
    assert everything["total"] == 7 and everything["page"] == 1 and everything["limit"] == 20
    assert [d["name"] for d in everything["data"]][:2] == ["eta queued", "zeta failed"]  # newest first
    assert everything["has_more"] is False

    page1 = await list_docs(client, kb, page=1, limit=3)
    page3 = await list_docs(client, kb, page=3, limit=3)
    assert (len(page1["data"]), page1["has_more"], page1["total"], page1["limit"]) == (3, True, 7, 3)
    assert (len(page3["data"]), page3["has_more"], page3["page"]) == (1, False, 3)
    full = await list_docs(client, kb, page=1, limit=7)
    assert full["has_more"] is True  # has_more = len(data) == limit, even on the last page
    past = await list_docs(client, kb, page=9, limit=3)
    assert past["data"] == [] and past["has_more"] is False and past["total"] == 7
    capped = await list_docs(client, kb, limit=500)
    assert (capped["limit"], len(capped["data"]), capped["has_more"]) == (500, 7, False)

    kw = await list_docs(client, kb, keyword="report")
    assert sorted(d["name"] for d in kw["data"]) == ["alpha report", "beta report"] and kw["total"] == 2

    def names(body: dict[str, Any]) -> set[str]:
        return {d["name"] for d in body["data"]}

    assert names(await list_docs(client, kb, status="available")) == {"alpha report", "delta notes", "epsilon notes"}
    assert names(await list_docs(client, kb, status="enabled")) == {"alpha report", "delta notes", "epsilon notes"}
    assert names(await list_docs(client, kb, status="disabled")) == {"beta report"}
    assert names(await list_docs(client, kb, status="archived")) == {"gamma notes"}
    assert names(await list_docs(client, kb, status="queuing")) == {"eta queued"}
    assert names(await list_docs(client, kb, status="error")) == {"zeta failed"}
    assert (await list_docs(client, kb, status="bogus"))["total"] == 7  # unknown: ignored
    both = await list_docs(client, kb, status="available", keyword="alpha")
    assert names(both) == {"alpha report"}
    by_name = {d["name"]: d for d in everything["data"]}
    assert (by_name["beta report"]["display_status"], by_name["beta report"]["enabled"]) == ("disabled", False)
    assert type(by_name["beta report"]["disabled_at"]) is int
    assert (by_name["gamma notes"]["display_status"], by_name["gamma notes"]["archived"]) == ("archived", True)


async def test_get_document_metadata_variants(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    created = await new_doc(client, kb, "detail", "one paragraph.\n\nanother paragraph.", process_rule=PARAGRAPHS)
    drain(core)
    doc_id = created["document"]["id"]
    full = await get_doc(client, kb, doc_id, "all")
    assert set(full) == DETAIL_ALL_KEYS
    assert (await get_doc(client, kb, doc_id))["id"] == doc_id  # all is the default
    assert set(await get_doc(client, kb, doc_id, "without")) == DETAIL_WITHOUT_KEYS
    only = await get_doc(client, kb, doc_id, "only")
    assert only == {"id": doc_id, "doc_type": None, "doc_metadata": []}
    assert (full["segment_count"], full["doc_language"], full["doc_type"]) == (2, "English", None)
    assert full["dataset_process_rule"]["mode"] == "custom"
    assert full["dataset_process_rule"]["rules"]["segmentation"]["separator"] == "\n\n"
    assert {"id", "mode", "rules"} <= set(full["document_process_rule"])
    assert full["document_process_rule"]["dataset_id"] == kb.url.rsplit("/", 1)[-1]
    assert full["dataset_process_rule_id"] == created["document"]["dataset_process_rule_id"]
    assert type(full["completed_at"]) is int and type(full["updated_at"]) is int
    assert full["tokens"] > 0

    resp = await client.get(f"{kb.url}/documents/{doc_id}", params={"metadata": "some"}, headers=kb.h)
    assert_dify_error(resp, 400, "invalid_metadata", "Invalid metadata value: some")
    resp = await client.get(f"{kb.url}/documents/00000000-0000-4000-8000-000000000000", headers=kb.h)
    assert_dify_error(resp, 404, "not_found", "Document not found.")


async def test_delete_document(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    keep = (await new_doc(client, kb, "keep", "narwhals keep swimming"))["document"]["id"]
    gone = (await new_doc(client, kb, "gone", "narwhals vanish"))["document"]["id"]
    drain(core)
    assert len(await retrieved(client, kb, "narwhals")) == 2
    resp = await client.delete(f"{kb.url}/documents/{gone}", headers=kb.h)
    assert resp.status_code == 204 and resp.content == b""
    assert await retrieved(client, kb, "narwhals") == ["narwhals keep swimming"]
    assert [d["id"] for d in (await list_docs(client, kb))["data"]] == [keep]
    resp = await client.delete(f"{kb.url}/documents/{gone}", headers=kb.h)
    assert_dify_error(resp, 404, "not_found", "Document Not Exists.")

    assert (await set_status(client, kb, "archive", [keep])).json() == {"result": "success"}
    resp = await client.delete(f"{kb.url}/documents/{keep}", headers=kb.h)
    assert_dify_error(resp, 403, "archived_document_immutable", "The archived document is not editable.")
    assert (await list_docs(client, kb))["total"] == 1


# --- status actions ----------------------------------------------------------------------------------------------
async def test_status_actions_and_retrieval(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    otters = (await new_doc(client, kb, "otters", "otters hold hands"))["document"]["id"]
    await new_doc(client, kb, "seals", "seals and otters share the bay")
    drain(core)
    both = {"otters hold hands", "seals and otters share the bay"}
    assert set(await retrieved(client, kb, "otters")) == both

    async def act(action: str) -> dict[str, Any]:
        resp = await set_status(client, kb, action, [otters, "00000000-0000-4000-8000-000000000000"])
        assert resp.status_code == 200 and resp.json() == {"result": "success"}  # unknown ids are skipped
        return await get_doc(client, kb, otters)

    doc = await act("disable")
    assert (doc["display_status"], doc["enabled"], type(doc["disabled_at"])) == ("disabled", False, int)
    assert await retrieved(client, kb, "otters") == ["seals and otters share the bay"]
    assert (await act("disable"))["display_status"] == "disabled"  # already disabled: a no-op
    doc = await act("enable")
    assert (doc["display_status"], doc["enabled"], doc["disabled_at"]) == ("available", True, None)
    assert set(await retrieved(client, kb, "otters")) == both
    doc = await act("archive")
    assert (doc["display_status"], doc["archived"]) == ("archived", True)
    assert await retrieved(client, kb, "otters") == ["seals and otters share the bay"]
    doc = await act("un_archive")
    assert (doc["display_status"], doc["archived"]) == ("available", False)
    assert set(await retrieved(client, kb, "otters")) == both

    resp = await set_status(client, kb, "delete", [otters])
    body = assert_dify_error(resp, 400, "invalid_action")
    assert body["message"].startswith("Invalid action: delete.")
    resp = await set_status(client, kb, "enable", [])
    assert resp.status_code == 200 and resp.json() == {"result": "success"}
    queued = await new_doc(client, kb, "queued", "puffins")
    resp = await set_status(client, kb, "disable", [queued["document"]["id"]])
    assert_dify_error(resp, 400, "invalid_action", "Document: queued is not completed.")
