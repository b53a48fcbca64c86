"""The scale benchmark's workspace generator (``bench/scale.py``): N chunks written as an ``alexandria import`` file,
streamed, with the exact top-10 of every benchmark query computed on the way.

What it writes: one workspace (its global space and group, the default view, one builder API key whose secret the
generator knows), one data source (``minilm``, 384-d), ``N / 10`` documents of 10 chunks each, every chunk's vector
given (nothing is embedded at import). ``TAG_10`` is on ~10% of the documents and ``TAG_1`` on ~1%, drawn
independently of everything else (so a filtered query's exact neighbours are a fair sample).

Texts: a document is a run of ``10 × ~150`` consecutive words of English passages (SciFact abstracts, the Cranfield
collection, COVID-QA passages from ``../shared/data``), started at a random word, cut into 10 chunks of 120-180
words: real vocabulary and term statistics for BM25. At large N the ~1.8M-word stream is reused at random offsets.

Vectors: clustered, not i.i.d. (HNSW recall on i.i.d. random vectors says nothing about real data), and placed in
the real model's space so that real queries land near the data, as in a real knowledge base. Three levels:

* ``K`` cluster centres (default 400) are the real all-MiniLM-L6-v2 embeddings of real passages: the SciFact
  abstracts judged relevant to the benchmark's queries, topped up with random SciFact abstracts. Cluster sizes are
  skewed (weight of centre ``k`` ∝ ``(k + 1)^-0.5``), as topics are;
* the noise is Gaussian with the real embeddings' own covariance (that of the centres around their mean), not
  isotropic: real embeddings spread along a few dominant directions (low intrinsic dimension), and isotropic noise
  in 384 dimensions makes every neighbour nearly equidistant, an unrealistically hard case for HNSW (on the same
  store at 100k, recall@10 0.89 with isotropic noise, 0.96 with this);
* a document's vector is ``normalise(centre + 0.7·n)`` and a chunk's ``normalise(document + 0.5·n')``, with
  ``E|n|² = 1``: chunks of one document are close, documents of one cluster less so, other clusters far.
  ``bench/scale.py`` reports how close the data comes to the queries (the mean exact top-1 cosine) next to the real
  queries' mean best cosine to the real centre passages.

Queries are real SciFact queries, whose text the server embeds with the real model. The generator gets their
embeddings from the same model in-process and computes, block by block while it writes, the exact top-10 chunks by
cosine (unfiltered, under ``TAG_10`` and under ``TAG_1``): so recall@10 measured over HTTP is the recall of the
store's vector search against exact search over the stored vectors, for the vector the server really searched with
(``bench/scale.py`` checks that the server's scores match the exact cosines: ``score_delta_max``).

Memory stays flat: rows are written as generated, per block of 1,000 documents, and the exact top-10 is merged
per block (queries × 10 ids and scores per filter).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

DIM = 384
PER_DOC = 10
TAG_10 = "scale-10pct"
TAG_1 = "scale-1pct"
FILTERS: dict[str, str | None] = {"all": None, "tag10": TAG_10, "tag1": TAG_1}
BLOCK_DOCS = 1000
T0 = 1_760_000_000_000
ENGLISH_SETS = ("scifact", "cranfield", "covidqa-chunk")
DOC_NOISE, CHUNK_NOISE = 0.7, 0.5


@dataclass(frozen=True)
class Corpus:
    """The word stream texts are cut from, the centres' passages and the queries."""

    words: list[str]
    centre_texts: list[str]
    queries: list[str]  # the measured queries, then the warm-up ones


def _passages(path: Path) -> list[tuple[str, str]]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            out.append((str(row["_id"]), f"{row.get('title') or ''} {row.get('text') or ''}".strip()))
    return out


def load_corpus(data: Path, queries: int, warmup: int, clusters: int, seed: int) -> Corpus:
    """Texts from ``data`` (the shared BEIR sets), ``queries + warmup`` SciFact queries and ``clusters`` centre
    passages."""
    rng = np.random.default_rng(seed)
    words: list[str] = []
    interned: dict[str, str] = {}
    for name in ENGLISH_SETS:
        path = data / name / "corpus.jsonl"
        if path.exists():
            for _, text in _passages(path):
                words.extend(interned.setdefault(w, w) for w in re.split(r"\s+", text) if w)
    scifact = _passages(data / "scifact" / "corpus.jsonl")
    with (data / "scifact" / "queries.jsonl").open(encoding="utf-8") as f:
        all_queries = [(str(r["_id"]), str(r["text"])) for r in map(json.loads, f)]
    picked = [all_queries[i] for i in rng.permutation(len(all_queries))[: queries + warmup]]
    relevant: dict[str, list[str]] = {}
    with (data / "scifact" / "qrels" / "test.tsv").open(encoding="utf-8") as f:
        for line in list(f)[1:]:
            qid, did, *_ = line.split("\t")
            relevant.setdefault(qid, []).append(did)
    text_of = dict(scifact)
    chosen = list(dict.fromkeys(d for qid, _ in picked for d in relevant.get(qid, []) if d in text_of))[:clusters]
    others = [d for d, _ in scifact if d not in set(chosen)]
    chosen += [others[i] for i in rng.permutation(len(others))[: clusters - len(chosen)]]
    return Corpus(words, [text_of[d] for d in chosen], [t for _, t in picked])


@dataclass
class ExactTop:
    """The running exact top-10 chunk indexes (``doc * PER_DOC + offset``) per query, for one filter."""

    scores: np.ndarray[Any, Any]
    ids: np.ndarray[Any, Any]

    @classmethod
    def empty(cls, queries: int, k: int = 10) -> ExactTop:
        return cls(np.full((queries, k), -np.inf, dtype=np.float32), np.full((queries, k), -1, dtype=np.int64))

    def merge(self, sims: np.ndarray[Any, Any], ids: np.ndarray[Any, Any]) -> None:
        if sims.shape[1] == 0:
            return
        k = self.scores.shape[1]
        all_scores = np.concatenate([self.scores, sims], axis=1)
        all_ids = np.concatenate([self.ids, np.broadcast_to(ids, sims.shape)], axis=1)
        top = np.argpartition(-all_scores, k - 1, axis=1)[:, :k]
        self.scores = np.take_along_axis(all_scores, top, axis=1)
        self.ids = np.take_along_axis(all_ids, top, axis=1)

    def top_sets(self) -> list[set[int]]:
        return [
            {int(i) for i, s in zip(ids, sc, strict=True) if np.isfinite(s)}
            for ids, sc in zip(self.ids, self.scores, strict=True)
        ]

    def score_maps(self) -> list[dict[int, float]]:
        """Per query, the exact cosine of each of its top-10 chunks."""
        return [{int(i): float(s) for i, s in zip(ids, sc, strict=True) if np.isfinite(s)}
                for ids, sc in zip(self.ids, self.scores, strict=True)]  # fmt: skip

    def best_scores(self) -> list[float]:
        return [float(s) for s in self.scores.max(axis=1)]


@dataclass
class Generated:
    """What the benchmark needs to query the imported workspace, and the exact answers."""

    workspace: str
    space: str
    data_source: str
    key: str
    chunks: int
    documents: int
    tagged: dict[str, int]  # documents per tag
    exact: dict[str, ExactTop] = field(default_factory=dict)  # by FILTERS name


def _sid(rng: np.random.Generator, prefix: str) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return prefix + "".join(alphabet[i] for i in rng.integers(0, len(alphabet), 10))


def _line(table: str, row: dict[str, Any]) -> str:
    return json.dumps({"t": table, "r": row}, ensure_ascii=False, separators=(",", ":")) + "\n"


def _normalise(v: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    out: np.ndarray[Any, Any] = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return out


def generate(
    out: IO[str],
    chunks: int,
    words: Sequence[str],
    centres: np.ndarray[Any, Any],
    queries: np.ndarray[Any, Any],
    *,
    seed: int = 0,
    workspace: str = "scalebench",
    on_docs: Callable[[int], None] | None = None,
) -> Generated:
    """Write the export file of a workspace of ``chunks`` chunks (rounded up to whole documents) to ``out``.
    ``centres`` (K × 384, unit rows) seed the clusters; ``queries`` (Q × 384, unit rows) get their exact top-10."""
    from alexandria.services.keys import hash_key

    rng = np.random.default_rng([seed, 1])
    docs = -(-chunks // PER_DOC)
    chunks = docs * PER_DOC
    ws_at = T0
    space, group, ds_sid, view = _sid(rng, "vlt_"), _sid(rng, "grp_"), _sid(rng, "dts_"), _sid(rng, "dsv_")
    key = "sk-" + _sid(rng, "") + _sid(rng, "") + _sid(rng, "")
    counts = {"workspace": 1, "spaces": 1, "groups": 1, "space_groups": 1, "data_sources": 1,
              "data_source_views": 1, "api_keys": 1, "documents": docs, "chunks": chunks}  # fmt: skip
    header = {"format": "alexandria-export", "version": 1, "workspace": workspace, "source": "scale-generator",
              "exported_at": ws_at, "vectors": "base64 float32 little-endian", "blobs": "base64",
              "counts": counts}  # fmt: skip
    out.write(json.dumps(header, separators=(",", ":")) + "\n")
    out.write(_line("workspace", {"sid": workspace, "name": workspace, "created_at": ws_at}))
    out.write(_line("spaces", {"sid": space, "kind": "global", "name": "Company Data", "created_at": ws_at,
                               "updated_at": ws_at}))  # fmt: skip
    out.write(_line("groups", {"sid": group, "name": "Workspace", "kind": "global", "created_at": ws_at}))
    out.write(_line("space_groups", {"space": space, "group": group}))
    out.write(_line("data_sources", {"sid": ds_sid, "core_id": hashlib.sha256(ds_sid.encode()).hexdigest(),
                                     "space": space, "name": "scale", "description": None, "connector_provider": None,
                                     "embedder": "minilm", "dim": DIM, "chunk_size": 254, "created_at": ws_at,
                                     "uuid": str(uuid.UUID(bytes=rng.bytes(16), version=4)), "dify": {},
                                     "updated_at": ws_at}))  # fmt: skip
    out.write(_line("data_source_views", {"sid": view, "space": space, "data_source": ds_sid, "kind": "default",
                                          "parents_in": None, "created_at": ws_at, "updated_at": ws_at}))  # fmt: skip
    out.write(_line("api_keys", {"key_hash": hash_key(key), "name": "scale bench", "role": "builder",
                                 "prefix": key[:7], "created_at": ws_at, "disabled_at": None,
                                 "data_source": None}))  # fmt: skip
    result = Generated(workspace, space, ds_sid, key, chunks, docs, {TAG_10: 0, TAG_1: 0},
                       {name: ExactTop.empty(len(queries)) for name in FILTERS})  # fmt: skip
    weights = (np.arange(len(centres)) + 1.0) ** -0.5
    weights /= weights.sum()
    # noise ~ N(0, Σ) with Σ the real embeddings' covariance (that of the centres), scaled to E|noise|² = 1
    shape = centres - centres.mean(axis=0)
    shape = (shape / np.sqrt(np.square(shape).sum())).astype(np.float32)
    for first in range(0, docs, BLOCK_DOCS):
        n = min(BLOCK_DOCS, docs - first)
        _block(out, result, np.random.default_rng([seed, 2, first]), first, n, words, centres, shape, weights, queries)
        if on_docs is not None:
            on_docs(n)
    out.write(json.dumps({"end": {"counts": counts}}, separators=(",", ":")) + "\n")
    return result


def _block(
    out: IO[str],
    result: Generated,
    rng: np.random.Generator,
    first: int,
    n: int,
    words: Sequence[str],
    centres: np.ndarray[Any, Any],
    shape: np.ndarray[Any, Any],
    weights: np.ndarray[Any, Any],
    queries: np.ndarray[Any, Any],
) -> None:
    """Documents ``first .. first + n``: their rows, and the exact top-10 merged with theirs."""
    cluster = rng.choice(len(centres), size=n, p=weights)
    doc_vecs = _normalise(centres[cluster] + DOC_NOISE * (rng.standard_normal((n, len(shape))) @ shape))
    vecs = _normalise(
        np.repeat(doc_vecs, PER_DOC, axis=0) + CHUNK_NOISE * (rng.standard_normal((n * PER_DOC, len(shape))) @ shape)
    )
    tag10 = rng.random(n) < 0.10
    tag1 = rng.random(n) < 0.01
    lengths = rng.integers(120, 181, size=(n, PER_DOC))
    starts = rng.integers(0, len(words), size=n)
    uuids = rng.bytes(16 * n)
    ds = result.data_source
    for i in range(n):
        d = first + i
        doc_id = f"doc-{d:07d}"
        pos = int(starts[i])
        texts = []
        for length in lengths[i]:
            end = pos + int(length)
            piece = words[pos:end] if end <= len(words) else [*words[pos:], *words[: end - len(words)]]
            texts.append(" ".join(piece))
            pos = end % len(words)
        text = "\n".join(texts)
        title = " ".join(texts[0].split()[:8])
        tags = [f"title:{title}"]
        if tag10[i]:
            tags.append(TAG_10)
            result.tagged[TAG_10] += 1
        if tag1[i]:
            tags.append(TAG_1)
            result.tagged[TAG_1] += 1
        doc_uuid = str(uuid.UUID(bytes=uuids[16 * i : 16 * i + 16], version=4))
        at = T0 + d * 1000
        tokens = [int(len(t.split()) * 1.3) for t in texts]
        out.write(_line("documents", {
            "data_source": ds, "document_id": doc_id, "title": title, "mime_type": "text/plain", "source_url": None,
            "timestamp": at, "tags": tags, "parents": [doc_id], "parent_id": None,
            "section": json.dumps({"prefix": None, "content": text, "sections": []}, separators=(",", ":")),
            "text": text, "hash": hashlib.sha256(text.encode()).hexdigest(), "text_size": len(text.encode()),
            "chunk_count": PER_DOC, "token_count": sum(tokens), "created": at, "updated": at,
            "index_state": "indexed", "index_error": None, "uuid": doc_uuid, "position": d + 1, "enabled": True,
            "archived": False, "disabled_at": None, "doc_metadata": {}, "batch": None, "dify": None,
        }))  # fmt: skip
        for offset, chunk_text in enumerate(texts):
            vector = base64.b64encode(vecs[i * PER_DOC + offset].astype("<f4").tobytes()).decode("ascii")
            out.write(_line("chunks", {
                "document": doc_uuid, "offset": offset, "text": chunk_text,
                "hash": hashlib.sha256(chunk_text.encode()).hexdigest(), "token_count": tokens[offset],
                "vector": vector, "segment": None, "child": None,
            }))  # fmt: skip
    ids = np.arange(first * PER_DOC, (first + n) * PER_DOC, dtype=np.int64)
    sims = queries @ vecs.T
    masks = {"all": None, "tag10": np.repeat(tag10, PER_DOC), "tag1": np.repeat(tag1, PER_DOC)}
    for name, mask in masks.items():
        if mask is None:
            result.exact[name].merge(sims, ids)
        else:
            result.exact[name].merge(sims[:, mask], ids[mask])
