"""Dify dialect: segments, child chunks and hierarchical documents (dify-behaviour.md §2.3, §3, §4), their effect on
retrieval, and one dataset shared by the Dify and Dust dialects. Fixtures and helpers: test_dify_documents.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from alexandria.services.core import Core
from tests.api import test_dify_documents as docs
from tests.api.dify_helpers import assert_dify_error, dataset_of, dify  # noqa: F401
from tests.api.test_dify_documents import (
    HIERARCHICAL,
    KB,
    PARAGRAPHS,
    drain,
    get_doc,
    list_docs,
    new_doc,
    retrieved,
    set_status,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dify"), pytest.mark.backends("sqlite", "postgres")]
settings, kb = docs.settings, docs.kb  # the same fixtures as the documents tests

SEGMENT_KEYS = {
    "id", "position", "document_id", "content", "sign_content", "answer", "word_count", "tokens", "keywords",
    "index_node_id", "index_node_hash", "hit_count", "enabled", "disabled_at", "disabled_by", "status", "created_by",
    "created_at", "updated_at", "updated_by", "indexing_at", "completed_at", "error", "stopped_at", "child_chunks",
    "attachments", "summary",
}  # fmt: skip
CHILD_KEYS = {"id", "segment_id", "content", "position", "word_count", "type", "created_at", "updated_at"}
MISSING = "00000000-0000-4000-8000-000000000000"
ANIMALS = "\n\n".join(f"{a} live here." for a in ("Aardvarks", "Badgers", "Camels", "Dingos", "Egrets"))


def check_segment(s: dict[str, Any], doc_id: str) -> None:
    assert set(s) == SEGMENT_KEYS
    assert s["document_id"] == doc_id and s["sign_content"] == s["content"]
    assert s["word_count"] == len(s["content"]) + len(s["answer"] or "")
    assert isinstance(s["keywords"], list) and s["attachments"] == []
    for c in s["child_chunks"]:
        assert set(c) == CHILD_KEYS and c["segment_id"] == s["id"]


async def indexed_doc(client: httpx.AsyncClient, core: Core, kb: KB, text: str, name: str = "doc", **body: Any) -> str:
    doc_id = str((await new_doc(client, kb, name, text, **body))["document"]["id"])
    drain(core)
    return doc_id


async def seg_list(client: httpx.AsyncClient, kb: KB, doc_id: str, params: Any = None) -> dict[str, Any]:
    resp = await client.get(f"{kb.url}/documents/{doc_id}/segments", params=params, headers=kb.h)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert set(body) == {"data", "doc_form", "total", "has_more", "limit", "page"}
    for s in body["data"]:
        check_segment(s, doc_id)
    return body


async def add_segments(client: httpx.AsyncClient, kb: KB, doc_id: str, body: Any) -> httpx.Response:
    return await client.post(f"{kb.url}/documents/{doc_id}/segments", json=body, headers=kb.h)


async def update(client: httpx.AsyncClient, kb: KB, doc_id: str, seg_id: str, **segment: Any) -> httpx.Response:
    url = f"{kb.url}/documents/{doc_id}/segments/{seg_id}"
    return await client.post(url, json={"segment": segment}, headers=kb.h)


async def doc_word_count(client: httpx.AsyncClient, kb: KB, doc_id: str) -> int:
    [doc] = [d for d in (await list_docs(client, kb))["data"] if d["id"] == doc_id]
    return int(doc["word_count"])


# --- segments ----------------------------------------------------------------------------------------------------
async def test_list_segments_pages_status_and_keyword(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    doc_id = await indexed_doc(client, core, kb, ANIMALS, process_rule=PARAGRAPHS)
    everything = await seg_list(client, kb, doc_id)
    assert (everything["total"], everything["limit"], everything["page"], everything["has_more"]) == (5, 20, 1, False)
    assert everything["doc_form"] == "text_model"
    assert [s["position"] for s in everything["data"]] == [1, 2, 3, 4, 5]
    assert everything["data"][1]["content"] == "Badgers live here."
    assert all(s["status"] == "completed" and s["enabled"] and s["tokens"] > 0 for s in everything["data"])
    assert all(type(s["completed_at"]) is int and s["error"] is None for s in everything["data"])

    page1 = await seg_list(client, kb, doc_id, {"page": 1, "limit": 2})
    page3 = await seg_list(client, kb, doc_id, {"page": 3, "limit": 2})
    assert ([s["position"] for s in page1["data"]], page1["has_more"], page1["total"]) == ([1, 2], True, 5)
    assert ([s["position"] for s in page3["data"]], page3["has_more"], page3["page"]) == ([5], False, 3)
    assert (await seg_list(client, kb, doc_id, {"limit": 5}))["has_more"] is True  # len(data) == limit
    capped = await seg_list(client, kb, doc_id, {"limit": 300})
    assert (capped["limit"], len(capped["data"]), capped["has_more"]) == (300, 5, False)
    assert (await seg_list(client, kb, doc_id, {"page": 4, "limit": 2}))["data"] == []

    found = await seg_list(client, kb, doc_id, {"keyword": "CAMELS"})  # ilike
    assert [s["content"] for s in found["data"]] == ["Camels live here."] and found["total"] == 1
    assert (await seg_list(client, kb, doc_id, [("status", "error")]))["total"] == 0
    assert (await seg_list(client, kb, doc_id, [("status", "error"), ("status", "completed")]))["total"] == 5
    assert (await seg_list(client, kb, doc_id, [("status", "completed"), ("keyword", "egrets")]))["total"] == 1

    first = everything["data"][0]
    resp = await client.get(f"{kb.url}/documents/{doc_id}/segments/{first['id']}", headers=kb.h)
    assert resp.status_code == 200 and resp.json() == {"data": first, "doc_form": "text_model"}
    resp = await client.get(f"{kb.url}/documents/{doc_id}/segments/{MISSING}", headers=kb.h)
    assert_dify_error(resp, 404, "not_found", "Segment not found.")
    other = await indexed_doc(client, core, kb, "another document", name="other")
    resp = await client.get(f"{kb.url}/documents/{other}/segments/{first['id']}", headers=kb.h)
    assert_dify_error(resp, 404, "not_found", "Segment not found.")  # a segment of another document


async def test_create_segments(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    queued = str((await new_doc(client, kb, "queued", "still waiting"))["document"]["id"])
    resp = await add_segments(client, kb, queued, {"segments": [{"content": "too early"}]})
    assert_dify_error(resp, 404, "not_found", "Document is not completed.")
    drain(core)

    doc_id = await indexed_doc(client, core, kb, ANIMALS, process_rule=PARAGRAPHS)
    segs = (await seg_list(client, kb, doc_id))["data"]
    resp = await client.delete(f"{kb.url}/documents/{doc_id}/segments/{segs[1]['id']}", headers=kb.h)
    assert resp.status_code == 204
    for bad in ({}, {"segments": []}, {"segments": "flamingos"}, {"segments": ["flamingos"]}):
        resp = await add_segments(client, kb, doc_id, bad)
        assert resp.status_code == 400, resp.text
        assert set(resp.json()) == {"error"} and isinstance(resp.json()["error"], str)  # outside the envelope

    items = [{"content": "Flamingos stand on one leg."}, {"content": "Gazelles leap.", "keywords": ["gazelle"]}]
    resp = await add_segments(client, kb, doc_id, {"segments": items})
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"data", "doc_form"} and resp.json()["doc_form"] == "text_model"
    created = resp.json()["data"]
    for s, item in zip(created, items, strict=True):
        check_segment(s, doc_id)
        assert s["content"] == item["content"] and s["word_count"] == len(item["content"])
        assert (s["status"], s["enabled"], s["answer"]) == ("completed", True, None) and s["tokens"] > 0
    assert [s["position"] for s in created] == [6, 7]  # max + 1 (5 after deleting position 2), not count + 1
    assert created[1]["keywords"] == ["gazelle"]
    assert await retrieved(client, kb, "flamingos") == ["Flamingos stand on one leg."]  # embedded synchronously
    listed = (await seg_list(client, kb, doc_id))["data"]
    assert [s["position"] for s in listed] == [1, 3, 4, 5, 6, 7]
    assert await doc_word_count(client, kb, doc_id) == sum(s["word_count"] for s in listed)

    resp = await add_segments(client, kb, doc_id, {"segments": [{"content": "   "}]})
    assert resp.status_code == 400
    assert (await seg_list(client, kb, doc_id))["total"] == 6
    await set_status(client, kb, "disable", [doc_id])
    resp = await add_segments(client, kb, doc_id, {"segments": [{"content": "Hyenas laugh."}]})
    assert_dify_error(resp, 404, "not_found", "Document is disabled.")


async def test_update_and_disable_segment(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    doc_id = await indexed_doc(client, core, kb, ANIMALS, process_rule=PARAGRAPHS)
    seg = (await seg_list(client, kb, doc_id))["data"][0]
    assert await retrieved(client, kb, "aardvarks") == ["Aardvarks live here."]

    resp = await update(client, kb, doc_id, seg["id"], content="Ibexes climb cliffs.")
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"data", "doc_form"}
    data = resp.json()["data"]
    check_segment(data, doc_id)
    assert (data["id"], data["position"], data["content"]) == (seg["id"], 1, "Ibexes climb cliffs.")
    assert data["word_count"] == len("Ibexes climb cliffs.") and data["index_node_hash"] != seg["index_node_hash"]
    assert await retrieved(client, kb, "ibexes") == ["Ibexes climb cliffs."]  # re-embedded
    assert await retrieved(client, kb, "aardvarks") == []
    listed = (await seg_list(client, kb, doc_id))["data"]
    assert await doc_word_count(client, kb, doc_id) == sum(s["word_count"] for s in listed)

    resp = await update(client, kb, doc_id, seg["id"], enabled=False)
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert (data["enabled"], type(data["disabled_at"]), data["content"]) == (False, int, "Ibexes climb cliffs.")
    assert data["disabled_by"] is not None
    assert await retrieved(client, kb, "ibexes") == []
    resp = await update(client, kb, doc_id, seg["id"], content="Jaguars prowl.")
    assert_dify_error(resp, 400, "invalid_param", "Can't update disabled segment")
    assert (await seg_list(client, kb, doc_id))["data"][0]["content"] == "Ibexes climb cliffs."

    resp = await update(client, kb, doc_id, seg["id"], enabled=True, content="Jaguars prowl.")
    assert resp.status_code == 200, resp.text
    assert (resp.json()["data"]["enabled"], resp.json()["data"]["disabled_at"]) == (True, None)
    assert await retrieved(client, kb, "jaguars") == ["Jaguars prowl."]
    resp = await update(client, kb, doc_id, MISSING, content="x")
    assert_dify_error(resp, 404, "not_found", "Segment not found.")


async def test_delete_segment(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    doc_id = await indexed_doc(client, core, kb, ANIMALS, process_rule=PARAGRAPHS)
    seg = (await seg_list(client, kb, doc_id))["data"][2]
    assert await retrieved(client, kb, "camels") == ["Camels live here."]
    before = await doc_word_count(client, kb, doc_id)
    url = f"{kb.url}/documents/{doc_id}/segments/{seg['id']}"
    resp = await client.delete(url, headers=kb.h)
    assert resp.status_code == 204 and resp.content == b""
    assert await retrieved(client, kb, "camels") == []
    assert (await seg_list(client, kb, doc_id))["total"] == 4
    assert await doc_word_count(client, kb, doc_id) == before - len("Camels live here.")
    assert_dify_error(await client.get(url, headers=kb.h), 404, "not_found", "Segment not found.")
    assert_dify_error(await client.delete(url, headers=kb.h), 404, "not_found", "Segment not found.")


# --- hierarchical documents and child chunks ---------------------------------------------------------------------
PARENTS = "Yaks live in the mountains.\nYaks give milk.\n\nZebus pull carts.\nZebus have humps.\nZebus meet yaks."


async def hierarchical_doc(client: httpx.AsyncClient, core: Core, kb: KB) -> tuple[str, list[dict[str, Any]]]:
    created = await new_doc(client, kb, "herds", PARENTS, doc_form="hierarchical_model", process_rule=HIERARCHICAL)
    assert created["document"]["doc_form"] == "hierarchical_model"
    drain(core)
    doc_id = str(created["document"]["id"])
    body = await seg_list(client, kb, doc_id)
    assert body["doc_form"] == "hierarchical_model"
    return doc_id, body["data"]


async def test_hierarchical_segments_and_retrieval(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    doc_id, segs = await hierarchical_doc(client, core, kb)
    assert [s["content"] for s in segs] == [
        "Yaks live in the mountains.\nYaks give milk.",
        "Zebus pull carts.\nZebus have humps.\nZebus meet yaks.",
    ]
    assert [[c["content"] for c in s["child_chunks"]] for s in segs] == [
        ["Yaks live in the mountains.", "Yaks give milk."],
        ["Zebus pull carts.", "Zebus have humps.", "Zebus meet yaks."],
    ]
    for s in segs:
        assert [c["position"] for c in s["child_chunks"]] == list(range(1, len(s["child_chunks"]) + 1))
        assert all(c["type"] == "automatic" and c["word_count"] == len(c["content"]) for c in s["child_chunks"])
    detail = await get_doc(client, kb, doc_id)
    assert (detail["doc_form"], detail["segment_count"]) == ("hierarchical_model", 2)
    assert detail["display_status"] == "available"

    resp = await client.post(
        f"{kb.url}/retrieve", json={"query": "zebus", "retrieval_model": docs.FULL_TEXT}, headers=kb.h
    )
    assert resp.status_code == 200, resp.text
    [record] = resp.json()["records"]
    assert record["segment"]["id"] == segs[1]["id"]  # the parent segment, not a child
    assert record["segment"]["content"] == segs[1]["content"]
    children = record["child_chunks"]
    assert {c["content"] for c in children} == {"Zebus pull carts.", "Zebus have humps.", "Zebus meet yaks."}
    assert all(set(c) == {"id", "content", "position", "score"} for c in children)
    scores = [c["score"] for c in children]
    assert scores == sorted(scores, reverse=True) and record["score"] == scores[0]
    assert set(await retrieved(client, kb, "yaks")) == {s["content"] for s in segs}  # one record per parent


async def test_child_chunks(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    doc_id, segs = await hierarchical_doc(client, core, kb)
    yaks, zebus = segs
    base = f"{kb.url}/documents/{doc_id}/segments/{yaks['id']}/child_chunks"

    resp = await client.post(base, json={"content": "Quetzals nest nearby."}, headers=kb.h)
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"data"}
    child = resp.json()["data"]
    assert set(child) == CHILD_KEYS
    assert (child["segment_id"], child["type"], child["content"]) == (yaks["id"], "customized", "Quetzals nest nearby.")
    assert child["word_count"] == len("Quetzals nest nearby.") and child["position"] == 3
    assert await retrieved(client, kb, "quetzals") == [yaks["content"]]  # the parent is found through the new child

    resp = await client.get(base, headers=kb.h)
    assert resp.status_code == 200
    listing = resp.json()
    assert set(listing) == {"data", "total", "total_pages", "page", "limit"}
    assert (listing["total"], listing["total_pages"], listing["page"], listing["limit"]) == (3, 1, 1, 20)
    assert all(set(c) == CHILD_KEYS for c in listing["data"])
    paged = (await client.get(base, params={"page": 2, "limit": 2}, headers=kb.h)).json()
    assert (paged["total"], paged["total_pages"], paged["page"], paged["limit"]) == (3, 2, 2, 2)
    assert [c["id"] for c in paged["data"]] == [child["id"]]
    keyword = (await client.get(base, params={"keyword": "milk"}, headers=kb.h)).json()
    assert [c["content"] for c in keyword["data"]] == ["Yaks give milk."] and keyword["total"] == 1

    resp = await client.patch(f"{base}/{child['id']}", json={"content": "Rheas run fast."}, headers=kb.h)
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"data"} and resp.json()["data"]["content"] == "Rheas run fast."
    assert resp.json()["data"]["id"] == child["id"] and resp.json()["data"]["word_count"] == len("Rheas run fast.")
    assert await retrieved(client, kb, "quetzals") == []
    assert await retrieved(client, kb, "rheas") == [yaks["content"]]

    foreign = zebus["child_chunks"][0]["id"]  # a child chunk of the other segment
    resp = await client.patch(f"{base}/{foreign}", json={"content": "x"}, headers=kb.h)
    assert_dify_error(resp, 404, "not_found", "Child chunk not found.")
    assert_dify_error(
        await client.delete(f"{base}/{foreign}", headers=kb.h), 404, "not_found", "Child chunk not found."
    )
    resp = await client.get(f"{kb.url}/documents/{doc_id}/segments/{MISSING}/child_chunks", headers=kb.h)
    assert_dify_error(resp, 404, "not_found", "Segment not found.")

    resp = await client.delete(f"{base}/{child['id']}", headers=kb.h)
    assert resp.status_code == 204 and resp.content == b""
    assert await retrieved(client, kb, "rheas") == []
    assert (await client.get(base, headers=kb.h)).json()["total"] == 2
    assert_dify_error(await client.delete(f"{base}/{child['id']}", headers=kb.h), 404, "not_found")


async def test_hierarchical_without_subchunk_segmentation_ends_in_error(
    client: httpx.AsyncClient, core: Core, kb: KB
) -> None:
    segmentation = {"separator": "\n\n", "max_tokens": 500}
    rules = {"pre_processing_rules": [], "segmentation": segmentation, "parent_mode": "paragraph"}
    created = await new_doc(
        client,
        kb,
        "flat",
        "a\n\nb",
        doc_form="hierarchical_model",
        process_rule={"mode": "hierarchical", "rules": rules},
    )
    assert created["document"]["indexing_status"] == "waiting"  # accepted: the rule is applied by the job
    drain(core)
    detail = await get_doc(client, kb, created["document"]["id"])
    assert (detail["indexing_status"], detail["display_status"]) == ("error", "error")
    assert detail["error"] == "No subchunk segmentation found in rules."


# --- one dataset, two dialects -----------------------------------------------------------------------------------
async def test_dust_and_dify_share_the_dataset(client: httpx.AsyncClient, core: Core, kb: KB) -> None:
    ws, _ = core.catalog.ensure_workspace("w1")
    ds = dataset_of(core, ws, kb.id)
    dust = f"/api/v1/w/{ws.sid}/spaces/{core.catalog.global_space(ws).sid}/data_sources/{ds.sid}"
    resp = await client.post(f"{dust}/documents/walrus-notes", json={"text": "Walruses bask on ice."}, headers=kb.h)
    assert resp.status_code == 200, resp.text

    [listed] = (await list_docs(client, kb))["data"]
    assert listed["name"] == "walrus-notes" and set(listed) == docs.DOCUMENT_KEYS
    assert (listed["display_status"], listed["indexing_status"]) == ("available", "completed")
    assert await retrieved(client, kb, "walruses") == ["Walruses bask on ice."]

    await new_doc(client, kb, "Penguin facts", "Penguins huddle for warmth.")
    drain(core)
    resp = await client.get(f"{dust}/search", params={"query": "penguins", "top_k": 5}, headers=kb.h)
    assert resp.status_code == 200, resp.text
    found = resp.json()["documents"]
    assert found[0]["title"] == "Penguin facts"  # best first
    assert any("Penguins huddle" in c["text"] for c in found[0]["chunks"])
    assert (await list_docs(client, kb))["total"] == 2
