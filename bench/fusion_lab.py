"""Fusion lab: every dev set's hybrid candidates captured once, then any fusion scored over all of them in seconds.

    .venv/bin/python bench/fusion_lab.py capture ../shared/data          # once (uses `alexandria eval`'s cache)
    .venv/bin/python bench/fusion_lab.py score                            # every registered fusion, every set

``capture`` runs each judged query of each set through :meth:`SearchService.candidates` (exactly what hybrid search
fuses) and stores, per query, both signals' scores and rankings, the BM25 bound and the chunk → document map, with
the set's judgements. ``score`` ranks those candidates with each fusion and prints nDCG@10 per set beside keyword and
vector alone, the margin over the better single signal, and the worst margin over all sets: the number a default
must keep at or above about -0.005 on every corpus. Fusions compared are :mod:`alexandria.search.fusion`'s methods
plus any ``--variant MODULE:FUNCTION`` (a function ``Candidates -> {id: score}``), so an idea is tried on every
set before it goes near the product.
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alexandria.config import Settings
from alexandria.domain.filters import FilterSet
from alexandria.evaluation import CHUNKS_PER_QUERY, DOCS_PER_QUERY, load_beir, ndcg_at
from alexandria.evaluation_runs import cached_data_source, default_cache_dir, find_sets
from alexandria.search import fusion
from alexandria.services.core import Core

Fuser = Callable[[fusion.Candidates], dict[int, float]]
CAPTURE = "fusion_lab.pickle"


def capture(paths: list[Path], cache: Path, embedder: str | None) -> None:
    """Each set's candidates per judged query, written to ``cache / CAPTURE``."""
    settings = Settings(data_dir=cache, database_url=None)
    core = Core(settings)
    out: dict[str, Any] = {}
    try:
        name = embedder or core.embedders.default_name()
        for directory in find_sets(paths):
            data = load_beir(directory)
            ds = cached_data_source(core, directory, data, name, cache)
            queries: dict[str, fusion.Candidates] = {}
            for i, qid in enumerate(sorted(data.qrels)):
                queries[qid] = core.search.candidates(ds, data.queries[qid], FilterSet(), CHUNKS_PER_QUERY)
                if i % 100 == 0:
                    print(f"{directory.name}: {i}/{len(data.qrels)}", file=sys.stderr, flush=True)
            pks = sorted({pk for c in queries.values() for pk in c.ids()})
            chunks = core.search.store.load_chunks(pks)
            docs = core.search.documents_by_pk(sorted({c.document_pk for c in chunks.values()}))
            doc_of = {pk: docs[c.document_pk].document_id for pk, c in chunks.items() if c.document_pk in docs}
            out[directory.name] = {"queries": queries, "doc_of": doc_of, "qrels": data.qrels}
    finally:
        core.close()
    (cache / CAPTURE).write_bytes(pickle.dumps(out))
    print(f"captured {len(out)} sets into {cache / CAPTURE}", file=sys.stderr)


def ranked_docs(order: list[int], doc_of: dict[int, str]) -> list[str]:
    seen: list[str] = []
    for pk in order:
        d = doc_of.get(pk)
        if d is not None and d not in seen:
            seen.append(d)
            if len(seen) >= DOCS_PER_QUERY:
                break
    return seen


def set_ndcg(captured: dict[str, Any], order_of: Callable[[fusion.Candidates], list[int]]) -> float:
    total = 0.0
    for qid, cands in captured["queries"].items():
        total += ndcg_at(ranked_docs(order_of(cands), captured["doc_of"]), captured["qrels"][qid], 10)
    return total / max(1, len(captured["queries"]))


def by_score(fuser: Fuser, depth: int) -> Callable[[fusion.Candidates], list[int]]:
    """Each query's candidates as the server gathers them (each signal's top ``depth``), ranked by ``fuser``."""

    def order(c: fusion.Candidates) -> list[int]:
        fused = fuser(c.top(depth))
        return [pk for pk, _ in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:CHUNKS_PER_QUERY]]

    return order


def fusers(extra: list[str]) -> dict[str, Fuser]:
    out: dict[str, Fuser] = {
        "confidence": lambda c: fusion.fuse(c, fusion.FusionSpec("confidence")),
        "convex0.6": lambda c: fusion.fuse(c, fusion.FusionSpec("convex", 0.6)),
        "rrf": lambda c: fusion.fuse(c, fusion.FusionSpec("rrf")),
    }
    for spec in extra:
        module, _, name = spec.partition(":")
        out[name] = getattr(importlib.import_module(module), name)
    return out


def score(cache: Path, extra: list[str], depth: int) -> None:
    sets: dict[str, Any] = pickle.loads((cache / CAPTURE).read_bytes())
    chosen = fusers(extra)
    print(f"{'set':<14} {'keyword':>8} {'vector':>8} " + " ".join(f"{n[:18]:>18}" for n in chosen))
    worst = dict.fromkeys(chosen, 1.0)
    mean = dict.fromkeys(chosen, 0.0)
    for name, captured in sets.items():
        kw = set_ndcg(captured, lambda c: list(c.keyword_ranked))
        vec = set_ndcg(captured, lambda c: list(c.vector_ranked))
        cells = []
        for label, fuser in chosen.items():
            value = set_ndcg(captured, by_score(fuser, depth))
            margin = value - max(kw, vec)
            worst[label] = min(worst[label], margin)
            mean[label] += value / len(sets)
            cells.append(f"{value:.4f} ({margin:+.3f})")
        print(f"{name:<14} {kw:>8.4f} {vec:>8.4f} " + " ".join(f"{c:>18}" for c in cells))
    print(f"{'worst margin':<32} " + " ".join(f"{worst[n]:>+18.4f}" for n in chosen))
    print(f"{'mean nDCG@10':<32} " + " ".join(f"{mean[n]:>18.4f}" for n in chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("capture", "score"))
    parser.add_argument("paths", nargs="*", type=Path, default=[Path(__file__).resolve().parents[2] / "shared/data"])
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--embedder", default=None)
    parser.add_argument("--variant", action="append", default=[], help="MODULE:FUNCTION, a Candidates -> scores")
    parser.add_argument("--depth", type=int, default=Settings().hybrid_candidates,
                        help="Each signal's top chunks fused (default: the server's hybrid_candidates).")  # fmt: skip
    args = parser.parse_args()
    cache = args.cache_dir or default_cache_dir()
    if args.command == "capture":
        capture(args.paths, cache, args.embedder)
    else:
        score(cache, args.variant, args.depth)


if __name__ == "__main__":
    main()
