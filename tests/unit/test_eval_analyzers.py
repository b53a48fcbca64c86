"""``alexandria eval --analyzer``: keyword rows under other analyzers, ranked in memory over the corpus chunked as the
store chunks it, beside the store's own keyword row."""

from __future__ import annotations

import json
import random
from pathlib import Path

from click.testing import CliRunner

from alexandria import evaluation_analyzers as by_analyzer
from alexandria import evaluation_runs as runs
from alexandria.cli import main
from alexandria.evaluation import load_beir
from alexandria.services.core import Core
from tests.fakes import HashingEmbedder

TOPICS = ["volcano lava magma", "ocean tide moon", "bread flour yeast", "chess king pawn", "violin string bow"]
FILLER = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda omicron sigma".split()


def make_set(root: Path) -> Path:
    """Per topic, documents whose title names the topic over a text of filler of a different length each (longer
    than the fake embedder's 32-token chunks, so chunked, and never tied); one query per topic names its words."""
    rng = random.Random(3)
    corpus, queries, qrels = [], [], []
    n = 0
    for t, topic in enumerate(TOPICS):
        for d in range(3):
            n += 1
            text = " ".join(rng.choices(FILLER, k=30 + n) + topic.split()[:d])
            corpus.append({"_id": f"d{t}-{d}", "title": topic.split()[d], "text": text})
        queries.append({"_id": f"q{t}", "text": topic})
        qrels += [f"q{t}\td{t}-{d}\t{1 + d % 2}" for d in range(3)]
    corpus.append({"_id": "noise", "title": "", "text": " ".join(w for t in TOPICS for w in t.split()[:1])})
    d = root / "tiny"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text("\n".join(json.dumps(c) for c in corpus))
    (d / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    return d


def test_chunks_are_the_stores(core: Core, tmp_path: Path) -> None:
    directory = make_set(tmp_path)
    data = load_beir(directory)
    chunks = by_analyzer.corpus_chunks(core, data, "fake")
    assert len(chunks.texts) > len(data.corpus)  # the fake embedder's 32-token chunks split the documents
    assert all(t.startswith("volcano\n") for t, d in zip(chunks.texts, chunks.documents, strict=True) if d == "d0-0")
    runs.cached_data_source(core, directory, data, "fake", tmp_path / "cache")  # the only data source
    stored = core.search.store.load_chunks(list(range(1, 10 * len(chunks.texts))))
    assert sorted(c.text for c in stored.values()) == sorted(chunks.texts)


def test_default_in_memory_ranks_as_the_store(core: Core, fake_embedder: HashingEmbedder, tmp_path: Path) -> None:
    directory = make_set(tmp_path)
    fake_embedder.calls.clear()
    result = runs.evaluate_set(
        core, directory, ["keyword"], [], ["fake"], tmp_path / "cache", analyzers=["default", "words", "trigram"]
    )
    assert list(result.table) == ["keyword", "keyword [default]", "keyword [words]", "keyword [trigram]"]
    # short chunks (tantivy's lengths are exact up to 40 terms) and no ties: the same ranking, query by query
    assert result.per_query["keyword [default]"] == result.per_query["keyword"]
    assert result.table["keyword [default]"] == result.table["keyword"]
    assert result.table["keyword [default]"]["recall@10"] == 1.0
    assert fake_embedder.calls == []  # keyword mode alone embeds nothing
    diag = runs.diagnostics(result)
    assert all(set(q["ndcg@10"]) == set(result.table) for q in diag["queries"].values())
    # analyzer rows alone ingest nothing
    alone = runs.evaluate_set(core, directory, [], [], ["fake"], tmp_path / "other", analyzers=["porter"])
    assert list(alone.table) == ["keyword [porter]"] and fake_embedder.calls == []
    assert not (tmp_path / "other" / "ingested").exists()


def test_cli_analyzer_rows(tmp_path: Path) -> None:
    directory = make_set(tmp_path / "sets")
    diag = tmp_path / "diag.json"
    base = ["eval", str(directory), "--cache-dir", str(tmp_path / "cache"), "--mode", "keyword"]
    out = CliRunner().invoke(
        main, [*base, "--analyzer", "default", "--analyzer", "unigram", "--diagnostics", str(diag)]
    )
    assert out.exit_code == 0, out.output
    table = json.loads(out.stdout.strip().splitlines()[-1])["tiny"]
    assert list(table) == ["keyword", "keyword [default]", "keyword [unigram]"]
    assert table["keyword [unigram]"] == table["keyword [default]"]  # no CJK: the same terms
    assert "keyword [unigram]" in out.stderr  # the table's row, in full (not read as rich markup)
    written = json.loads(diag.read_text())["tiny"]
    assert set(written["summary"]) == set(table)
    assert all("keyword [default]" in q["ndcg@10"] for q in written["queries"].values())
    plain = CliRunner().invoke(main, base)
    assert plain.exit_code == 0, plain.output
    assert list(json.loads(plain.stdout.strip().splitlines()[-1])["tiny"]) == ["keyword"]
    bad = CliRunner().invoke(main, [*base, "--analyzer", "snowball"])
    assert bad.exit_code == 2
    assert "snowball" in bad.output and all(name in bad.output for name in ("default", "trigram", "porter"))
