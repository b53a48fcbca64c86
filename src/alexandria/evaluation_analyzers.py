"""Keyword search in ``alexandria eval`` without embedding anything.

- ``--analyzer NAME``: keyword search of a set under other analyzers, side by side with the store's
  (``search/analyzer_variants.py`` names them). The corpus is chunked as the store chunks it (the data source's
  embedder's tokenizer, the default chunk size, the title a prefix of every chunk:
  :func:`alexandria.evaluation.corpus_section`), each analyzer's BM25 index is built in memory
  (``search/memory_bm25.py``, the engines' constants), and a document scores as its best chunk, as in every other
  row.
- ``--mode keyword`` alone: the corpus is stored in a data source of :class:`KeywordOnlyEmbedder` (the embedder's
  tokenizer and input length, so the same chunks, and a constant vector), so the store's keyword row costs no model
  time either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from alexandria.evaluation import CHUNKS_PER_QUERY, DOCS_PER_QUERY, BeirSet, corpus_section
from alexandria.ingest.base import Embedder, Tokenizer, Vectors
from alexandria.ingest.chunkers import SectionChunker
from alexandria.search.analyzer_variants import get_analyzer
from alexandria.search.memory_bm25 import MemoryBM25
from alexandria.services.core import Core
from alexandria.services.documents import chunk_writes


class KeywordOnlyEmbedder:
    """An embedder's tokenizer and input length (so the chunks are that model's), one constant unit vector."""

    def __init__(self, name: str, model: Embedder) -> None:
        self._name = name
        self._model = model

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return 8

    @property
    def max_tokens(self) -> int:
        return self._model.max_tokens

    @property
    def tokenizer(self) -> Tokenizer:
        return self._model.tokenizer

    @property
    def scripts(self) -> frozenset[str] | None:
        return None

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[:, 0] = 1.0
        return out


def keyword_only_embedder(core: Core, embedder: str) -> str:
    """The name of ``embedder``'s :class:`KeywordOnlyEmbedder`, registered with the core."""
    name = f"keyword-only-{embedder}"
    core.embedders.register(name, KeywordOnlyEmbedder(name, core.embedders.get(embedder)))
    return name


def label(name: str) -> str:
    """The row of an analyzer in the tables, the JSON output and the diagnostics."""
    return f"keyword [{name}]"


@dataclass(frozen=True)
class Chunks:
    texts: list[str]
    documents: list[str]  # the document id of each chunk


def corpus_chunks(core: Core, data: BeirSet, embedder: str) -> Chunks:
    """The set's corpus in the chunks a data source of ``embedder`` (and the server's chunk size) stores."""
    model = core.embedders.get(embedder)
    chunker = SectionChunker(model.tokenizer, core.settings.chunk_size or model.max_tokens)
    texts: list[str] = []
    documents: list[str] = []
    for doc_id, title, text in data.corpus:
        writes = chunk_writes(chunker, corpus_section(title, text))  # a document it cannot chunk fails the ingest too
        texts.extend(w.text for w in writes)
        documents.extend([doc_id] * len(writes))
    return Chunks(texts, documents)


def rank_documents(index: MemoryBM25, chunks: Chunks, terms: list[str]) -> list[str]:
    """Document ids best first, each scored as its best chunk among the top chunks (as the store's rows)."""
    ranked: dict[str, None] = {}
    for row, _ in index.top(terms, CHUNKS_PER_QUERY):
        ranked.setdefault(chunks.documents[row])
        if len(ranked) >= DOCS_PER_QUERY:
            break
    return list(ranked)


def analyzer_runs(
    chunks: Chunks,
    data: BeirSet,
    qids: Sequence[str],
    names: Sequence[str],
    on_query: Callable[[str], None] | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Each analyzer's ranked document ids per query, keyed by :func:`label`. ``on_query(label)`` reports each
    query run."""
    runs: dict[str, dict[str, list[str]]] = {}
    for name in names:
        analyzer = get_analyzer(name)
        index = MemoryBM25(chunks.texts, analyzer.document_terms)
        run = runs[label(name)] = {}
        for qid in qids:
            run[qid] = rank_documents(index, chunks, analyzer.query_terms(data.queries[qid]))
            if on_query is not None:
                on_query(label(name))
    return runs
