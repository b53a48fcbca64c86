"""``alexandria eval``'s runner on a tiny generated set: variants side by side, sampling, diagnostics, the cache."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from alexandria import evaluation_runs as runs
from alexandria.cli import main
from alexandria.errors import InvalidRequest
from alexandria.search.fusion import FusionSpec
from alexandria.services.core import Core
from tests.fakes import HashingEmbedder

TOPICS = [
    "volcano lava magma eruption",
    "ocean tide moon gravity",
    "bread flour yeast oven",
    "chess king queen pawn",
    "violin string bow music",
    "comet ice orbit tail",
    "bee honey hive pollen",
    "rain cloud storm thunder",
]


def make_set(root: Path, name: str, seed: int = 0, distinct: bool = False) -> Path:
    """Documents mixing one topic's words with filler; each query names two words of one topic. ``distinct``: each
    document's filler is its own and of its own length, so that scores seldom tie."""
    rng = random.Random(seed)
    filler = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    corpus, queries, qrels = [], [], []
    for t, topic in enumerate(TOPICS):
        words = topic.split()
        for d in range(3):
            padding = [f"pad{t}x{d}x{i}" for i in range(rng.randint(2, 14))] if distinct else rng.sample(filler, 4)
            text = " ".join(rng.sample(words, 3) + padding)
            corpus.append({"_id": f"d{t}-{d}", "title": "", "text": text})
        queries.append({"_id": f"q{t}", "text": " ".join(rng.sample(words, 2))})
        qrels += [f"q{t}\td{t}-{d}\t1" for d in range(3)]
    d = root / name
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text("\n".join(json.dumps(c) for c in corpus))
    (d / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    return d


def test_variants_side_by_side_with_diagnostics_and_cache(
    core: Core, fake_embedder: HashingEmbedder, tmp_path: Path
) -> None:
    directory = make_set(tmp_path / "sets", "tiny")
    specs = [FusionSpec(), FusionSpec("rrf"), FusionSpec("convex", 0.3)]
    result = runs.evaluate_set(core, directory, runs.MODES, specs, ["fake"], tmp_path / "cache")
    assert list(result.table) == ["keyword", "vector", "hybrid:confidence", "hybrid:rrf", "hybrid:convex(alpha=0.3)"]
    for label, m in result.table.items():
        assert set(m) == {"ndcg@10", "recall@10", "recall@100", "mrr"}
        assert 0.0 <= m["ndcg@10"] <= 1.0
        # the table's nDCG@10 is the mean of the per-query values
        assert m["ndcg@10"] == pytest.approx(sum(result.per_query[label].values()) / len(result.queries), abs=1e-3)
    # the queries name words only their topic's documents hold: keyword search finds them
    assert result.table["keyword"]["recall@10"] == 1.0
    diag = runs.diagnostics(result)
    assert set(diag["queries"]) == set(result.queries)
    for q in diag["queries"].values():
        scores = q["ndcg@10"]
        assert all(scores[b] == max(scores.values()) for b in q["best"])
        assert all(scores[w] == min(scores.values()) for w in q["worst"])
    summary = diag["summary"]["keyword"]
    assert summary["best"] == sum("keyword" in q["best"] for q in diag["queries"].values())
    # a second run finds the corpus cached and embeds at most the queries (they may be cached too)
    embedded_docs = sum(fake_embedder.calls)
    fake_embedder.calls.clear()
    again = runs.evaluate_set(core, directory, ["hybrid"], [FusionSpec()], ["fake"], tmp_path / "cache")
    assert sum(fake_embedder.calls) <= len(result.queries) < embedded_docs
    assert again.table["hybrid:confidence"] == result.table["hybrid:confidence"]


def test_query_sampling_is_seeded(core: Core, tmp_path: Path) -> None:
    directory = make_set(tmp_path, "tiny")
    one = runs.evaluate_set(core, directory, ["keyword"], [], ["fake"], tmp_path / "c", max_queries=3, seed=7)
    two = runs.evaluate_set(core, directory, ["keyword"], [], ["fake"], tmp_path / "c", max_queries=3, seed=7)
    other = runs.evaluate_set(core, directory, ["keyword"], [], ["fake"], tmp_path / "c", max_queries=3, seed=8)
    assert len(one.queries) == 3 and one.queries == two.queries
    assert other.queries != one.queries or len(TOPICS) <= 3


def test_sets_and_fusion_arguments(tmp_path: Path) -> None:
    a, b = make_set(tmp_path / "all", "a"), make_set(tmp_path / "all", "b")
    assert runs.find_sets([tmp_path / "all"]) == [a, b]
    assert runs.find_sets([b]) == [b]
    with pytest.raises(InvalidRequest):
        runs.find_sets([tmp_path / "all" / "a" / "qrels"])
    assert runs.parse_fusion("convex:0.4") == FusionSpec("convex", 0.4)
    assert runs.parse_fusion("confidence") == FusionSpec()
    for bad in ("nope", "rrf:0.5", "convex:x", "convex:2"):
        with pytest.raises(InvalidRequest):
            runs.parse_fusion(bad)


def test_cli_evaluates_a_folder_of_sets(tmp_path: Path) -> None:
    make_set(tmp_path / "sets", "one")
    make_set(tmp_path / "sets", "two", seed=1)
    diag = tmp_path / "diag.json"
    args = ["eval", str(tmp_path / "sets"), "--cache-dir", str(tmp_path / "cache"), "--fusion", "confidence",
            "--fusion", "rrf", "--max-queries", "4", "--diagnostics", str(diag)]  # fmt: skip
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result) == {"one", "two"}
    assert set(result["one"]) == {"keyword", "vector", "hybrid:confidence", "hybrid:rrf"}
    written = json.loads(diag.read_text())
    assert len(written["two"]["queries"]) == 4
    bad = CliRunner().invoke(main, ["eval", str(tmp_path / "sets"), "--fusion", "nope"])
    assert bad.exit_code == 1


def test_the_cache_key_follows_the_corpus_content_not_its_file_times(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "set", tmp_path / "b" / "set"
    for d in (a, b):
        d.mkdir(parents=True)
        (d / "corpus.jsonl").write_text('{"_id": "d1", "title": "", "text": "mitochondria"}\n')
    os.utime(b / "corpus.jsonl", (1_000_000, 1_000_000))  # a copy made elsewhere: other times, same content
    assert runs.corpus_fingerprint(a) == runs.corpus_fingerprint(b)
    (b / "corpus.jsonl").write_text('{"_id": "d1", "title": "", "text": "ribosome"}\n')
    assert runs.corpus_fingerprint(a) != runs.corpus_fingerprint(b)


def test_evals_hybrid_ranks_as_the_server_does(core: Core, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hybrid variant's documents are those the server's own hybrid search returns for the query (top 10, the
    server's candidate depth), whatever eval's deeper lists for keyword and vector alone."""
    monkeypatch.setattr(core.settings, "hybrid_candidates", 10)  # shallower than the tiny set: the depth matters
    from alexandria.domain.filters import FilterSet
    from alexandria.domain.models import SearchMode
    from alexandria.evaluation import load_beir

    directory = make_set(tmp_path / "sets", "tiny", seed=3, distinct=True)
    data = load_beir(directory)
    ds = runs.cached_data_source(core, directory, data, "fake", tmp_path / "cache")
    chosen = runs.variants(["hybrid"], [FusionSpec()], ["fake"])
    qids = sorted(data.qrels)
    got = runs.run_queries(core, ds, data, qids, chosen, False)["hybrid:confidence"]
    for qid in qids:
        hits = core.search.rank_chunks(ds, data.queries[qid], SearchMode.HYBRID, FilterSet(), 10)
        docs = core.search.documents_by_pk([h.document_pk for h in hits])
        # up to chunks tied at the 10th score (the hashing vectors of unrelated texts all score 0)
        untied = [h for h in hits if h.score != hits[-1].score]
        server = list(dict.fromkeys(docs[h.document_pk].document_id for h in untied))
        assert len(server) >= 3 and got[qid][: len(server)] == server, qid
