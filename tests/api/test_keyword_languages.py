"""Keyword search in every script, over HTTP on both engines: Chinese, Japanese, Korean, Arabic and German documents
found by queries written as a reader would write them (no spaces between Chinese words, Arabic without its vowel
marks or with other alef forms, German without its umlauts), and an English query not found in any of them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.test_dust_documents import auth, base, upsert
from tests.conftest import Tenant

pytestmark = [pytest.mark.anyio, pytest.mark.backends("sqlite", "postgres")]

DOCS = {
    "beijing": "北京是中华人民共和国的首都，也是全国的政治、文化中心。",
    "shanghai": "上海位于长江入海口，是中国最大的经济城市。",
    "tokyo": "東京都は日本の首都であり、人口が最も多い都市です。",
    "seoul": "서울특별시는 대한민국의 수도이며 가장 큰 도시이다.",
    "cairo": "القاهرةُ هي عاصمةُ جمهوريةِ مِصرَ العربيةِ وأكبرُ مُدُنِها.",
    "alexandria": "تأسست مدينة الإسكندرية على يد الإسكندر الأكبر عام ٣٣١ قبل الميلاد.",
    "munich": "Die Ludwig-Maximilians-Universität München liegt an der Straße nach Süden.",
    "english": "The cat sat on the mat while the runners were running in the park.",
}


@pytest.fixture
async def loaded(client: httpx.AsyncClient, tenant: Tenant) -> Tenant:
    for doc_id, text in DOCS.items():
        resp = await upsert(client, tenant, doc_id, text=text)
        assert resp.status_code == 200, resp.text
    return tenant


async def keyword_hits(client: httpx.AsyncClient, t: Tenant, query: str) -> list[str]:
    params: dict[str, Any] = {"query": query, "top_k": 10, "search_mode": "keyword"}
    resp = await client.get(f"{base(t)}/search", params=params, headers=auth(t.key))
    assert resp.status_code == 200, resp.text
    docs = resp.json()["documents"]
    scores = [d["chunks"][0]["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    return [str(d["document_id"]) for d in docs]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("中国的首都是哪里", "beijing"),  # no spaces: found through its characters and bigrams (首都, 中国 ...)
        ("长江入海口的城市", "shanghai"),
        ("日本の首都はどこですか", "tokyo"),  # kanji and kana
        ("대한민국 수도", "seoul"),  # hangul, the particle 의 attached in the document
        ("ما هي عاصمة مصر", "cairo"),  # no vowel marks in the query; عاصمة against عاصمةُ; stopwords ما هي dropped
        ("من اسس مدينة الاسكندرية", "alexandria"),  # bare alef (اس) against hamza forms (إس, تأس)
        ("Universitat Munchen Strasse", "munich"),  # umlauts and ß folded
        ("runner runs", "english"),  # English stemming kept
    ],
)
async def test_each_script_is_found_by_keyword(
    client: httpx.AsyncClient, loaded: Tenant, query: str, expected: str
) -> None:
    hits = await keyword_hits(client, loaded, query)
    assert hits and hits[0] == expected, hits


async def test_a_query_in_another_script_finds_nothing(client: httpx.AsyncClient, loaded: Tenant) -> None:
    assert await keyword_hits(client, loaded, "volcano eruption") == []
    assert await keyword_hits(client, loaded, "火山") == []
