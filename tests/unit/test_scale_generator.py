"""The scale benchmark's generator (``bench/scale_workspace.py``): its file imports cleanly with ``alexandria import``,
its API key works, its tags are where it says, and its exact top-10 is what the store's exact (filtered) search finds
over the imported vectors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from alexandria.cli import main
from alexandria.config import Settings
from alexandria.domain.filters import DocumentFilter, FilterSet
from alexandria.services.core import Core
from bench import scale_workspace as gen
from tests.fakes import HashingEmbedder

WORDS = ("the cell membrane protein binds a receptor and signals growth while mitochondria produce energy for the "
         "tissue in patients with chronic disease").split()  # fmt: skip


def unit(rows: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((rows, gen.DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def found_ids(core: Core, pks: list[int]) -> set[int]:
    chunks = core.store.load_chunks(pks)
    docs = core.store.documents_by_pk([c.document_pk for c in chunks.values()], with_text=False)
    return {int(docs[c.document_pk].document_id[4:]) * gen.PER_DOC + c.offset for c in chunks.values()}


def test_generated_workspace_imports_and_its_exact_neighbours_are_the_stores(tmp_path: Path) -> None:
    centres, queries = unit(8, 1), unit(4, 2)
    # a seed whose 20 documents include one with the 1% tag, so that both filters have something to find
    seed = next(
        s for s in range(200) if gen.generate(io.StringIO(), 200, WORDS, centres, queries, seed=s).tagged[gen.TAG_1]
    )
    export = tmp_path / "workspace.jsonl"
    with export.open("w", encoding="utf-8") as out:
        generated = gen.generate(out, 195, WORDS, centres, queries, seed=seed)  # rounded up to whole documents
    assert (generated.documents, generated.chunks) == (20, 200)

    result = CliRunner().invoke(main, ["import", "--data-dir", str(tmp_path / "store"), str(export)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == generated.workspace

    core = Core(Settings(data_dir=tmp_path / "store"))
    core.embedders.register("minilm", HashingEmbedder())
    try:
        key = core.keys.authenticate(generated.key)
        ws = core.catalog.workspace(generated.workspace)
        assert key.workspace_id == ws.id
        ds = core.catalog.data_source(ws, generated.data_source)
        docs = core.store.latest_documents(ds, FilterSet(), 1000)
        assert len(docs) == 20
        assert len(core.store.chunks_of_documents(docs)) == 200
        for tag in (gen.TAG_10, gen.TAG_1):
            flt = FilterSet((DocumentFilter(tags_in=(tag,)),))
            assert len(core.store.latest_documents(ds, flt, 1000)) == generated.tagged[tag]
        for name, tag in gen.FILTERS.items():
            flt = FilterSet((DocumentFilter(tags_in=(tag,)),)) if tag else FilterSet()
            for q, want in zip(queries, generated.exact[name].top_sets(), strict=True):
                got = found_ids(core, [h.pk for h in core.store.vector_search(ds, q, flt, 10)])
                if tag:  # few candidates: the store searches them exactly
                    assert got == want
                else:
                    assert len(got & want) >= 9
    finally:
        core.close()
