"""The Dify section of the storage contract, on both backends: processing records merged as JSON merge patches,
metadata field counts and renames, dataset counts, tags, files and secrets, segment and child chunk bookkeeping; and,
on PostgreSQL, a deleted dataset's own HNSW index dropped with it."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from alexandria.config import Settings
from alexandria.domain.dify import DISPLAY_STATUSES, DatasetCounts, SegmentWrite, display_status
from alexandria.domain.models import DataSource, Document, Workspace
from alexandria.services.core import Core
from alexandria.services.dify import DocumentOptions
from alexandria.storage.base import DocumentWrite
from alexandria.storage.database import DuplicateKey
from alexandria.storage.postgres.chunk_index import hnsw_index_name
from alexandria.storage.postgres.db import PgEngine
from tests.fakes import HashingEmbedder

pytestmark = pytest.mark.backends("sqlite", "postgres")

TEXT = "Mitochondria produce ATP.\n\nChloroplasts capture light.\n\nRibosomes build proteins."


@pytest.fixture
def core(settings: Settings) -> Iterator[Core]:
    c = Core(settings)
    c.embedders.register("minilm", HashingEmbedder())
    yield c
    c.close()


def dataset(core: Core, name: str = "kb") -> tuple[Workspace, DataSource]:
    ws, _ = core.catalog.ensure_workspace("w1")
    return ws, core.dify.create_dataset(ws, {"name": name, "indexing_technique": "high_quality"})


def indexed(core: Core, ds: DataSource, name: str, text: str = TEXT) -> Document:
    ds, doc, _ = core.dify.create_by_text(ds, name, text, DocumentOptions())
    core.jobs.pool(0).drain()
    return core.dify.document(ds, doc.uuid)


def test_processing_records_merge_as_json_merge_patches(core: Core) -> None:
    _, ds = dataset(core)
    doc = indexed(core, ds, "cells")
    assert doc.dify is not None and "error" not in doc.dify  # the index job's ``"error": None`` removed it
    core.store.patch_dify_record(doc.pk, {"nested": {"a": 1, "b": {"c": 2}}, "error": "x", "extra": [1, 2]})
    assert (core.dify.document(ds, doc.uuid).dify or {})["error"] == "x"
    core.store.patch_dify_record(doc.pk, {"error": None})
    core.store.patch_dify_record(doc.pk, {"nested": {"a": None, "b": {"d": 3}}, "extra": [3]})
    record = core.dify.document(ds, doc.uuid).dify or {}
    assert "error" not in record  # a null removes the key
    assert record["nested"] == {"b": {"c": 2, "d": 3}}  # objects merge recursively, nulls remove
    assert record["extra"] == [3]  # arrays are replaced
    assert record["word_count"] == doc.dify["word_count"]  # the rest is kept

    # progress moves only a document still at the hash, not yet indexed
    assert not core.store.set_index_progress(ds, doc.document_id, doc.hash, "indexing", {"x": 1})
    again, _ = core.dify.update_by_text(
        ds, core.dify.document(ds, doc.uuid), "cells", TEXT + " More.", DocumentOptions()
    )
    assert not core.store.set_index_progress(ds, again.document_id, "not-the-hash", "parsing", {})
    assert core.store.set_index_progress(ds, again.document_id, again.hash, "parsing", {"x": 1, "nested": None})
    moved = core.dify.document(ds, doc.uuid)
    assert moved.index_state == "parsing"
    assert (moved.dify or {})["x"] == 1 and "nested" not in (moved.dify or {})


def test_patch_leaves_a_record_less_document_alone(core: Core) -> None:
    _, ds = dataset(core)
    doc = indexed(core, ds, "cells")
    write = DocumentWrite(doc.document_id, doc.title, "text/plain", None, 1, (), (), None, "{}", "x", "h", 0)
    core.store.upsert_document(ds, write, [], np.zeros((0, ds.dim), np.float32))  # rewritten through Dust
    core.store.patch_dify_record(doc.pk, {"x": 1})
    stored = core.store.get_document(ds, doc.document_id, with_text=False)
    assert stored is not None and stored.dify is None and core.store.document_segments(doc.pk) == []


def test_listing_by_display_status_agrees_with_the_derivation(core: Core) -> None:
    _, ds = dataset(core)
    a, b, c = (indexed(core, ds, n) for n in ("a", "b", "c"))
    core.store.set_document_flags(ds, b.pk, enabled=False)
    core.store.set_document_flags(ds, c.pk, archived=True)
    _, queued, _ = core.dify.create_by_text(ds, "queued", TEXT, DocumentOptions())
    _, moving, _ = core.dify.create_by_text(ds, "moving", TEXT, DocumentOptions())
    assert core.store.set_index_progress(ds, moving.document_id, moving.hash, "splitting", {})
    docs, _ = core.store.list_dify_documents(ds, None, None, 100, 0)
    derived = {d.uuid: display_status(d) for d in docs}
    assert sorted(derived.values()) == ["archived", "available", "disabled", "indexing", "queuing"]
    for status in DISPLAY_STATUSES:
        listed, total = core.store.list_dify_documents(ds, None, status, 100, 0)
        assert {d.uuid for d in listed} == {u for u, s in derived.items() if s == status} and total == len(listed)
    assert core.store.data_source_counts([ds.id])[ds.id].available_document_count == 1
    assert a.uuid in {d.uuid for d in core.store.list_dify_documents(ds, "A", "available", 100, 0)[0]}
    assert (derived[queued.uuid], derived[moving.uuid]) == ("queuing", "indexing")


def test_metadata_field_counts_renames_and_deletes(core: Core) -> None:
    _, ds = dataset(core)
    a, b, c = (indexed(core, ds, n) for n in ("a", "b", "c"))
    author = core.store.create_metadata_field(ds, "author", "string")
    year = core.store.create_metadata_field(ds, "odd name.x", "number")
    core.store.create_metadata_field(ds, 'say "hi"', "string")
    core.store.set_doc_metadata(a.pk, {"author": "Ada", "odd name.x": 1, 'say "hi"': "x"})
    core.store.set_doc_metadata(b.pk, {"author": None, "writer": "kept?"})  # a key with a null value holds it
    core.store.set_doc_metadata(c.pk, {"other": 1})
    counts = {f.name: n for f, n in core.store.list_metadata_fields(ds)}
    assert counts == {"author": 2, "odd name.x": 1, 'say "hi"': 1}

    writer = core.store.rename_metadata_field(ds, author, "writer")  # overwrites b's own "writer" value
    assert writer.name == "writer" and writer.pk == author.pk
    meta = {d.document_id: core.dify.document(ds, d.uuid).doc_metadata for d in (a, b, c)}
    assert meta == {
        a.document_id: {"writer": "Ada", "odd name.x": 1, 'say "hi"': "x"},
        b.document_id: {"writer": None},
        c.document_id: {"other": 1},
    }
    with pytest.raises(DuplicateKey):  # the service words the message
        core.store.create_metadata_field(ds, "writer", "string")
    with pytest.raises(DuplicateKey):  # the service words the message
        core.store.rename_metadata_field(ds, year, "writer")
    core.store.delete_metadata_field(ds, year)
    assert core.dify.document(ds, a.uuid).doc_metadata == {"writer": "Ada", 'say "hi"': "x"}
    assert [(f.name, n) for f, n in core.store.list_metadata_fields(ds)] == [("writer", 2), ('say "hi"', 1)]


def test_dataset_counts(core: Core) -> None:
    _, ds = dataset(core)
    _, empty = dataset(core, "empty")
    a, b = indexed(core, ds, "a"), indexed(core, ds, "b", "Another text entirely.")
    core.store.set_document_flags(ds, b.pk, enabled=False)
    counts = core.store.data_source_counts([ds.id, empty.id])
    words = sum(int((d.dify or {})["word_count"]) for d in (a, b))
    assert counts[empty.id] == DatasetCounts(0, 0, 0)
    assert (counts[ds.id].document_count, counts[ds.id].word_count) == (2, words)
    assert counts[ds.id].available_document_count == 1
    core.store.patch_dify_record(a.pk, {"word_count": None})  # no count in the record: the text's size instead
    assert core.store.data_source_counts([ds.id])[ds.id].word_count == a.text_size + int((b.dify or {})["word_count"])


def test_tags_files_and_secrets(core: Core) -> None:
    ws, ds = dataset(core)
    t1, t2 = core.store.create_tag(ws.id, "one"), core.store.create_tag(ws.id, "two")
    with pytest.raises(DuplicateKey):
        core.store.create_tag(ws.id, "one")
    with pytest.raises(DuplicateKey):
        core.store.rename_tag(t2, "one")
    core.store.bind_tags(ds.id, [t1.pk, t1.pk, t2.pk])
    core.store.bind_tags(ds.id, [t1.pk])  # binding twice is a no-op
    assert [(t.name, t.binding_count) for t in core.store.list_tags(ws.id)] == [("one", 1), ("two", 1)]
    core.store.unbind_tags(ds.id, [t2.pk])
    assert [t.name for t in core.store.tags_of_data_sources([ds.id])[ds.id]] == ["one"]
    assert core.store.rename_tag(t1, "uno").name == "uno"
    core.store.delete_tag(t1)
    assert core.store.get_tag(ws.id, t1.uuid) is None and core.store.tags_of_data_sources([ds.id]) == {ds.id: []}

    data = bytes(range(256)) * 3  # every byte value, NUL included
    saved = core.store.save_file(ws.id, "raw.bin", "bin", "application/octet-stream", data)
    assert saved.size == len(data)
    found = core.store.get_file(ws.id, saved.uuid)
    assert found is not None and found[0] == saved and found[1] == data
    assert core.store.file_data(saved.uuid) == data and core.store.get_file(ws.id + 1000, saved.uuid) is None

    secret = core.store.instance_secret("signing")
    assert len(secret) == 64 and core.store.instance_secret("signing") == secret
    assert core.store.instance_secret("other") != secret


def test_segments_children_and_hits(core: Core) -> None:
    _, ds = dataset(core)
    doc = indexed(core, ds, "cells")
    segs = core.store.document_segments(doc.pk)
    assert [s.position for s in segs] == list(range(1, len(segs) + 1)) and all(s.enabled for s in segs)
    added = core.store.add_segments(ds, doc.pk, [SegmentWrite("100% Pure_Cotton", "h", 3, 4, keywords=("k",))])
    assert core.store.segments_by_pk(added)[added[0]].position == len(segs) + 1
    found, total = core.store.list_segments(doc.pk, [], "100% PURE_", 10, 0)  # literal, case-insensitive
    assert total == 1 and found[0].keywords == ("k",)
    assert core.store.list_segments(doc.pk, [], "100_", 10, 0)[1] == 0
    assert core.store.list_segments(doc.pk, ["completed"], None, 2, 1)[1] == len(segs) + 1
    seg = found[0]
    first, second = core.store.add_child_chunk(seg, "one"), core.store.add_child_chunk(seg, "two")
    assert (first.position, second.position, second.type) == (1, 2, "customized")
    assert core.store.update_child_chunk(first.pk, "uno").content == "uno"
    core.store.update_segment(seg.pk, enabled=False)
    got = core.store.get_segment(doc.pk, seg.uuid)
    assert got is not None and not got.enabled and got.disabled_at is not None
    assert [c.content for c in got.children] == ["uno", "two"]
    assert core.store.delete_child_chunk(second.pk) and not core.store.delete_child_chunk(second.pk)
    core.store.bump_hit_counts([seg.pk, segs[0].pk])
    core.store.bump_hit_counts([seg.pk])
    hits = core.store.segments_by_pk([seg.pk, segs[0].pk])
    assert (hits[seg.pk].hit_count, hits[segs[0].pk].hit_count) == (2, 1)
    assert core.store.delete_segment(seg.pk) and core.store.get_segment(doc.pk, seg.uuid) is None


def _hnsw_indexes(core: Core) -> set[str]:
    db = core.store.engine  # type: ignore[attr-defined]
    assert isinstance(db, PgEngine)
    with db.read() as conn:
        return {str(r[0]) for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'chunks'")}


def test_deleting_a_dataset_takes_everything_of_it(core: Core, backend: str) -> None:
    ws, ds = dataset(core)
    _, other = dataset(core, "other")
    indexed(core, ds, "cells")
    kept = indexed(core, other, "kept")
    if backend == "postgres":
        assert {hnsw_index_name(ds.id), hnsw_index_name(other.id)} <= _hnsw_indexes(core)
    assert core.store.delete_data_source(ds)
    assert not core.store.delete_data_source(ds)
    assert core.store.get_data_source_by_uuid(ws.id, ds.uuid) is None and core.store.list_jobs(ds.id) == []
    if backend == "postgres":
        names = _hnsw_indexes(core)
        assert hnsw_index_name(ds.id) not in names and hnsw_index_name(other.id) in names
    assert core.dify.document(other, kept.uuid).index_state == "indexed"
