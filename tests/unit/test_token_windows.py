"""OpenAI's static chunking (``ingest/token_windows.py``): windows of at most ``max_tokens`` tokens that overlap by
about ``overlap`` tokens, cut at word starts, covering the whole text; with fake tokenizers and MiniLM's own."""

from __future__ import annotations

import random

import pytest

from alexandria.ingest.embedders import load_default_tokenizer
from alexandria.ingest.token_windows import token_windows
from tests.unit.test_chunkers import PieceTokenizer, WordTokenizer


def words(n: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, n))


def test_windows_overlap_by_the_overlap() -> None:
    text = words(25)
    chunks = token_windows(text, WordTokenizer().spans(text), 10, 4)
    assert chunks == [words(10), words(16, 6), words(22, 12), words(25, 18)]


def test_no_overlap_partitions_the_text() -> None:
    text = words(23)
    chunks = token_windows(text, WordTokenizer().spans(text), 5, 0)
    assert " ".join(chunks) == text and [len(c.split()) for c in chunks] == [5, 5, 5, 5, 3]


def test_cuts_fall_at_word_starts() -> None:
    text = "alpha ~beta ~gamma delta ~eps zeta eta ~theta iota"
    chunks = token_windows(text, PieceTokenizer().spans(text), 4, 1)
    assert all(not c.startswith("~") for c in chunks)
    assert chunks[0] == "alpha ~beta ~gamma" and chunks[1] == "delta ~eps zeta"
    # a word longer than a window is cut where the tokens run out
    long = "a ~b ~c ~d ~e"
    assert token_windows(long, PieceTokenizer().spans(long), 2, 0) == ["a ~b", "~c ~d", "~e"]


def test_blank_and_bad_parameters() -> None:
    assert token_windows("", [], 10, 2) == []
    for size, overlap in ((0, 0), (10, 10), (10, -1)):
        with pytest.raises(ValueError):
            token_windows("x", [(0, 1, True)], size, overlap)


def test_with_minilms_tokenizer_every_window_fits_and_the_text_is_covered() -> None:
    tokenizer = load_default_tokenizer()
    rng = random.Random(3)
    vocabulary = ["library", "Alexandria's", "papyrus", "scrolls", "unbelievably", "catalogued", "Ptolemy", "(284",
                  "BC)", "naïve", "lighthouse,", "Pharos."]  # fmt: skip
    text = "\n\n".join(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(20, 60))) for _ in range(30))
    for size, overlap in ((100, 50), (120, 0), (800, 400)):
        chunks = token_windows(text, tokenizer.spans(text), size, overlap)
        assert all(tokenizer.count(c) <= size for c in chunks)
        assert chunks[0] == text[: len(chunks[0])] and text.endswith(chunks[-1])
        position = 0
        for chunk in chunks:  # in order, each starting within the previous one (overlap) or right after it
            found = text.find(chunk, position)
            assert found >= 0
            position = found + 1
        if overlap == 0:
            assert sum(tokenizer.count(c) for c in chunks) == tokenizer.count(text)
