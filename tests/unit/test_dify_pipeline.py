"""Dify documents on the durable queue: the pipeline states, a crashed worker's job resumed, transient embedding
failures retried, permanent ones ending in ``error`` with their message (never stuck in "indexing")."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from click.testing import CliRunner

from alexandria.cli import main
from alexandria.config import Settings
from alexandria.domain.models import DataSource, Role, Workspace
from alexandria.errors import EmbeddingFailed
from alexandria.ingest.base import Vectors
from alexandria.services.core import Core
from alexandria.services.dify import DocumentOptions, FileUpload, display_status, indexing_status
from tests.fakes import HashingEmbedder

TEXT = "Mitochondria produce ATP.\n\nChloroplasts capture light.\n\nRibosomes build proteins."


class FlakyEmbedder(HashingEmbedder):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures_left = failures

    def embed(self, texts: Sequence[str]) -> Vectors:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise EmbeddingFailed("the embedding service is down")
        return super().embed(texts)


pytestmark = pytest.mark.backends("sqlite", "postgres")


@pytest.fixture
def quick(settings: Settings) -> Settings:
    return settings.model_copy(update={"job_retry_base_s": 0.0, "job_retry_max_s": 0.0, "job_max_attempts": 3})


def open_core(settings: Settings, embedder: HashingEmbedder) -> Core:
    core = Core(settings)
    core.embedders.register("minilm", embedder)
    return core


def dataset(core: Core) -> tuple[Workspace, DataSource]:
    ws, _ = core.catalog.ensure_workspace("w1")
    ds = core.dify.create_dataset(ws, {"name": "kb", "indexing_technique": "high_quality"})
    return ws, ds


@pytest.fixture
def core(quick: Settings) -> Iterator[Core]:
    c = open_core(quick, HashingEmbedder())
    yield c
    c.close()


def test_states_from_waiting_to_completed(core: Core) -> None:
    _, ds = dataset(core)
    ds, doc, batch = core.dify.create_by_text(ds, "cells", TEXT, DocumentOptions())
    assert (indexing_status(doc), display_status(doc)) == ("waiting", "queuing")
    assert len(batch) == 20 and batch.isdigit()
    core.jobs.pool(0).drain()
    doc = core.dify.document(ds, doc.uuid)
    assert (indexing_status(doc), display_status(doc)) == ("completed", "available")
    record = doc.dify or {}
    for stamp in ("processing_started_at", "parsing_completed_at", "splitting_completed_at", "completed_at"):
        assert isinstance(record[stamp], int)
    assert record["word_count"] == sum(s.word_count for s in core.store.document_segments(doc.pk))
    assert doc.chunk_count == len(core.store.document_segments(doc.pk)) >= 1


def test_a_crashed_workers_job_is_resumed_and_indexes_once(core: Core) -> None:
    _, ds = dataset(core)
    ds, doc, _ = core.dify.create_by_text(ds, "cells", TEXT, DocumentOptions())
    dead = core.jobs.pool(0)
    claimed = core.store.claim_jobs(dead.owner("dead"), 10, 60_000, dead.clock())
    assert len(claimed) == 1
    # the worker got as far as "indexing", then died: its lease is released (as at start-up for dead processes)
    job = claimed[0]
    assert core.store.set_index_progress(ds, doc.document_id, job.payload_str("hash"), "indexing", {})
    assert display_status(core.dify.document(ds, doc.uuid)) == "indexing"
    assert core.store.release_leases(dead.owner("dead"), dead.clock()) == 1
    core.jobs.pool(0).drain()
    doc = core.dify.document(ds, doc.uuid)
    assert indexing_status(doc) == "completed"
    segments = core.store.document_segments(doc.pk)
    assert doc.chunk_count == len(segments) and len({s.content for s in segments}) == len(segments)


def test_transient_failures_are_retried_then_a_permanent_one_ends_in_error(quick: Settings) -> None:
    flaky = FlakyEmbedder(failures=2)
    core = open_core(quick, flaky)
    try:
        _, ds = dataset(core)
        ds, doc, _ = core.dify.create_by_text(ds, "cells", TEXT, DocumentOptions())
        core.jobs.pool(0).drain()
        assert indexing_status(core.dify.document(ds, doc.uuid)) == "completed"
        assert flaky.failures_left == 0

        flaky.failures_left = 10  # more failures than attempts
        ds, doc2, _ = core.dify.create_by_text(ds, "more", TEXT + " More.", DocumentOptions())
        core.jobs.pool(0).drain()
        doc2 = core.dify.document(ds, doc2.uuid)
        assert (indexing_status(doc2), display_status(doc2)) == ("error", "error")
        assert doc2.index_error == "the embedding service is down"
    finally:
        core.close()


def test_unparseable_file_and_bad_rule_end_in_error_at_once(core: Core) -> None:
    _, ds = dataset(core)
    ds, pdf, _ = core.dify.create_by_file(ds, FileUpload("broken.pdf", b"%PDF-1.4 not really"), DocumentOptions())
    rule = {"mode": "custom", "rules": {"pre_processing_rules": [], "segmentation": {"separator": "\n",
            "max_tokens": 10}}}  # fmt: skip
    from alexandria.ingest.dify_rules import parse_process_rule

    ds, short, _ = core.dify.create_by_text(ds, "short", TEXT, DocumentOptions(process_rule=parse_process_rule(rule)))
    core.jobs.pool(0).drain()
    pdf, short = core.dify.document(ds, pdf.uuid), core.dify.document(ds, short.uuid)
    assert indexing_status(pdf) == "error" and pdf.index_error
    assert indexing_status(short) == "error"
    assert short.index_error == "Custom segment length should be between 50 and 4000."
    jobs = core.store.list_jobs(ds.id)
    assert all(j.attempts == 1 for j in jobs if j.state.value == "failed")  # permanent: not retried


def test_cli_key_bound_to_one_dataset(settings: Settings) -> None:
    data = settings.data_dir
    core = open_core(settings, HashingEmbedder())
    ws, ds = dataset(core)
    other = core.dify.create_dataset(ws, {"name": "other", "indexing_technique": "high_quality"})
    core.close()
    runner = CliRunner(env={"ALEXANDRIA_DATABASE_URL": settings.database_url})  # the backend under test
    result = runner.invoke(main, ["keys", "create", "--data-dir", str(data), "--workspace", "w1", "--dataset", ds.uuid])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    core = open_core(settings, HashingEmbedder())
    try:
        key = core.keys.authenticate(secret)
        assert key.data_source_id == ds.id and key.data_source_id != other.id and key.role is Role.BUILDER
    finally:
        core.close()
    result = runner.invoke(main, ["keys", "create", "--data-dir", str(data), "--workspace", "w1", "--dataset", "nope"])
    assert result.exit_code != 0


def test_a_files_parsed_text_becomes_the_documents_content(core: Core) -> None:
    _, ds = dataset(core)
    html = b"<html><head><script>var x = 1;</script></head><body><h1>Volcanoes</h1><p>Magma rises.</p></body></html>"
    ds, doc, _ = core.dify.create_by_file(ds, FileUpload("volcano.html", html), DocumentOptions())
    assert (core.store.get_document(ds, doc.document_id, with_text=True) or doc).text == ""
    core.jobs.pool(0).drain()
    stored = core.store.get_document(ds, doc.document_id, with_text=True)
    assert stored is not None and stored.text is not None
    assert "Volcanoes" in stored.text and "Magma rises." in stored.text and "var x" not in stored.text
    assert stored.text_size == len(stored.text)


def test_new_documents_get_the_built_in_fields_when_enabled(core: Core) -> None:
    _, ds = dataset(core)
    ds = core.dify_meta.set_built_in(ds, True)
    ds, doc, _ = core.dify.create_by_text(ds, "later", TEXT, DocumentOptions())
    stored = core.dify.document(ds, doc.uuid)
    assert stored.doc_metadata["document_name"] == "later"
    assert set(stored.doc_metadata) == {"document_name", "uploader", "upload_date", "last_update_date", "source"}


def test_uploaded_files_go_with_their_documents(core: Core) -> None:
    def files() -> int:
        db = core.store.db  # type: ignore[attr-defined]
        with db.read() as conn:
            return int(conn.scalar("SELECT count(*) FROM files"))

    ws, ds = dataset(core)
    ds, doc, _ = core.dify.create_by_file(ds, FileUpload("a.txt", b"first version of the notes"), DocumentOptions())
    ds, _, _ = core.dify.create_by_file(ds, FileUpload("b.txt", b"another document"), DocumentOptions())
    core.jobs.pool(0).drain()
    assert files() == 2
    core.dify.update_by_file(ds, core.dify.document(ds, doc.uuid), FileUpload("a.txt", b"second"), DocumentOptions())
    core.jobs.pool(0).drain()
    assert files() == 2  # the replaced file is gone, the new one kept
    core.dify.update_by_file(ds, core.dify.document(ds, doc.uuid), None, DocumentOptions())  # re-process
    assert files() == 2
    core.dify.delete_document(ds, core.dify.document(ds, doc.uuid))
    assert files() == 1
    core.dify.delete_dataset(ds)
    assert files() == 0
    assert core.store.get_data_source_by_uuid(ws.id, ds.uuid) is None
