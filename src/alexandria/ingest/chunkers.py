"""Dust's section-tree chunker (core's ``BaseV0Splitter``), sized with our embedder's tokenizer.

A document is a :class:`Section` tree. Prefixes (headings) are inherited by every descendant and repeated,
once each, at the start of every chunk cut from their subtree; no separators are added. The tree is first
"tokenized": every content becomes leaf pieces that fit the budget left by the inherited prefixes (a long
content is cut into *balanced* pieces on word boundaries, with no overlap and no lost character). Then,
as in Dust, a subtree whose rendering fits ``max_chunk_tokens`` becomes one chunk; otherwise its children
are packed greedily into chunks (consecutive siblings only, never across parents) and oversized children
are recursed into.

Sizes are estimated by summing the token counts of the parts. A concatenation can tokenize differently
from its parts (``"p" + "c"`` is one word), so every final chunk is re-counted by the tokenizer and split
further in the rare case it overflows: ``Chunk.token_count`` is the tokenizer's count of ``Chunk.text``.
Those final counts go through the tokenizer's ``count_batch(texts) -> list[int]`` when it has one (not
part of the :class:`Tokenizer` protocol; e.g. ``encode_batch``, which tokenizes in parallel).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

from alexandria.ingest.base import Tokenizer

__all__ = [
    "MAX_SECTION_DEPTH",
    "Chunk",
    "ChunkingError",
    "Section",
    "SectionChunker",
    "section_full_text",
    "split_text",
]

MAX_SECTION_DEPTH = 256
"""Deepest section nesting accepted (keeps recursion far below Python's limit)."""

Span = tuple[int, int, bool]
_Group = tuple[str, list["_Node"]]
"""Consecutive siblings rendered as one chunk under their parent's prefixes."""


class ChunkingError(ValueError):
    """The document cannot be chunked (prefixes too long, tree too deep)."""


@dataclass(frozen=True)
class Section:
    """One node of a document: an optional heading ``prefix``, optional ``content``, then sub-sections."""

    prefix: str | None
    content: str | None
    sections: tuple[Section, ...] = ()


@dataclass(frozen=True)
class Chunk:
    offset: int
    """Index of the chunk in the document, ``0..n-1``."""
    text: str
    token_count: int
    """Tokens of ``text`` counted by the tokenizer (no special tokens)."""


def section_full_text(section: Section) -> str:
    """Prefix + content of every node, depth-first (Dust's ``sectionFullText``)."""
    parts: list[str] = []
    stack = [section]
    while stack:
        node = stack.pop()
        parts.append(node.prefix or "")
        parts.append(node.content or "")
        stack.extend(reversed(node.sections))
    return "".join(parts)


@dataclass(eq=False, slots=True)
class _Node:
    """A node of the tokenized tree: a section (own ``prefix``) or a content piece (``text``, a leaf)."""

    prefix: str
    text: str
    chain: str
    """Every prefix from the root down to this node, its own included."""
    chain_tokens: int
    body: int
    """Summed tokens of this subtree's own prefixes and contents (inherited prefixes excluded)."""
    children: list[_Node] = field(default_factory=list)
    is_piece: bool = False


def _render(node: _Node, parts: list[str]) -> None:
    parts.append(node.prefix)
    parts.append(node.text)
    for child in node.children:
        _render(child, parts)


def _cut_points(spans: list[Span], budget: int) -> list[int]:
    """Token indices where a piece may start: word starts, plus any clean boundary inside a run of more
    than ``budget`` tokens with no word start (a giant word must be cut anyway)."""
    clean: list[int] = []
    words: list[int] = []
    max_start, max_end = spans[0][0], spans[0][1]
    for t in range(1, len(spans)):
        start, end, starts_word = spans[t]
        # A cut is clean if no earlier token reaches past it and it yields a non-empty piece.
        if start >= max_end and start > max_start:
            clean.append(t)
            if starts_word:
                words.append(t)
        if end > max_end:
            max_end = end
        if start > max_start:
            max_start = start
    n = len(spans)
    allowed: list[int] = []
    prev = 0
    for b in [*words, n]:
        if b - prev > budget:
            allowed.extend(clean[bisect_right(clean, prev) : bisect_left(clean, b)])
        if b < n:
            allowed.append(b)
        prev = b
    return allowed


def _balanced_cuts(spans: list[Span], budget: int) -> list[int]:
    """Token indices ``[0, c1, ..., n]`` cutting ``spans`` into the fewest pieces of at most ``budget``
    tokens that avoid cutting words, with nearly equal sizes."""
    n = len(spans)
    if n <= budget:
        return [0, n]
    allowed = _cut_points(spans, budget)
    # lowest[j]: the smallest start from which the rest fits in j pieces (greedy from the end).
    lowest = [n]
    while lowest[-1] > 0:
        need = lowest[-1] - budget
        if need <= 0:
            lowest.append(0)
            break
        i = bisect_left(allowed, need)
        if i < len(allowed) and allowed[i] < lowest[-1]:
            lowest.append(allowed[i])
        else:  # no clean cut within reach: accept an oversized piece
            i = bisect_left(allowed, lowest[-1]) - 1
            lowest.append(allowed[i] if i >= 0 else 0)
    k = len(lowest) - 1
    cuts = [0]
    for i in range(1, k):
        prev = cuts[-1]
        target = prev + -(-(n - prev) // (k - i + 1))
        lo, hi = max(prev + 1, lowest[k - i]), min(prev + budget, n - 1)
        j = bisect_right(allowed, min(target, hi)) - 1  # prefer moving the cut back
        if j >= 0 and allowed[j] >= lo:
            cuts.append(allowed[j])
            continue
        j = bisect_left(allowed, max(target + 1, lo))
        if j < len(allowed) and allowed[j] <= hi:
            cuts.append(allowed[j])
            continue
        if n - prev <= budget:
            break
        j = bisect_right(allowed, prev)
        if j == len(allowed):
            break
        cuts.append(allowed[j])
    cuts.append(n)
    return cuts


def split_text(text: str, spans: list[Span], budget: int) -> list[tuple[str, int]]:
    """Cut ``text`` (tokenized as ``spans``) into balanced ``(piece, tokens)`` of at most ``budget`` tokens.

    Pieces are slices of ``text`` that join back to it exactly; whitespace at a cut stays with the earlier
    piece. A piece exceeds ``budget`` only if the tokenizer's offsets leave no clean boundary to cut at.
    """
    if not text:
        return []
    cuts = _balanced_cuts(spans, budget) if spans else [0, 0]
    chars = [0, *(spans[c][0] for c in cuts[1:-1]), len(text)]
    return [(text[chars[i] : chars[i + 1]], cuts[i + 1] - cuts[i]) for i in range(len(cuts) - 1)]


class SectionChunker:
    """Splits a :class:`Section` tree into chunks of at most ``max_chunk_tokens`` tokens."""

    def __init__(self, tokenizer: Tokenizer, max_chunk_tokens: int) -> None:
        if max_chunk_tokens < 2:
            raise ValueError("max_chunk_tokens must be at least 2")
        self._tokenizer = tokenizer
        self._max = max_chunk_tokens

    @property
    def max_chunk_tokens(self) -> int:
        return self._max

    def chunk(self, section: Section) -> list[Chunk]:
        """Chunks of ``section`` in document order; whitespace-only chunks are dropped.

        Raises :class:`ChunkingError` if the prefixes inherited by a node reach half of
        ``max_chunk_tokens`` or the tree is nested deeper than :data:`MAX_SECTION_DEPTH`.
        """
        root = self._build(section, "", 0, 0, {})
        groups: list[_Group] = []
        self._pack("", 0, [root], groups)
        out: list[tuple[str, int]] = []
        self._finish(groups, out)
        texts = [(text, count) for text, count in out if text.strip()]
        return [Chunk(offset=i, text=text, token_count=count) for i, (text, count) in enumerate(texts)]

    def _build(
        self, section: Section, chain: str, chain_tokens: int, depth: int, prefix_counts: dict[str, int]
    ) -> _Node:
        if depth > MAX_SECTION_DEPTH:
            raise ChunkingError(f"sections are nested deeper than {MAX_SECTION_DEPTH} levels")
        prefix = section.prefix or ""
        own = 0
        if prefix:
            own = prefix_counts.get(prefix, -1)
            if own < 0:
                own = prefix_counts[prefix] = self._tokenizer.count(prefix)
            chain += prefix
            chain_tokens += own
            if chain_tokens >= self._max // 2:
                raise ChunkingError(
                    f"prefixes accrue to more than half max_chunk_size ({chain_tokens} tokens of "
                    f"prefixes, max_chunk_size {self._max})"
                )
        node = _Node(prefix=prefix, text="", chain=chain, chain_tokens=chain_tokens, body=own)
        content = section.content or ""
        if content:
            spans = self._tokenizer.spans(content)
            for piece, tokens in split_text(content, spans, self._max - chain_tokens):
                node.children.append(_Node("", piece, chain, chain_tokens, tokens, is_piece=True))
        for sub in section.sections:
            node.children.append(self._build(sub, chain, chain_tokens, depth + 1, prefix_counts))
        node.body += sum(child.body for child in node.children)
        return node

    def _pack(self, chain: str, chain_tokens: int, items: list[_Node], groups: list[_Group]) -> None:
        """Dust's ``chunks()``: greedy runs of consecutive siblings under the parent's prefixes ``chain``
        (sized by summed counts); a sibling too large on its own is recursed into."""
        selection: list[_Node] = []
        size = chain_tokens
        for item in items:
            if chain_tokens + item.body > self._max:
                if selection:
                    groups.append((chain, selection))
                selection, size = [], chain_tokens
                if item.children:
                    self._pack(item.chain, item.chain_tokens, item.children, groups)
                else:  # a piece with no clean cut: let the real count send it to _force
                    groups.append((chain, [item]))
                continue
            if size + item.body > self._max:
                groups.append((chain, selection))
                selection, size = [], chain_tokens
            selection.append(item)
            size += item.body
        if selection:
            groups.append((chain, selection))

    def _finish(self, groups: list[_Group], out: list[tuple[str, int]]) -> None:
        """Render ``groups`` and count them with the tokenizer; re-split the few that overflow."""
        texts = [self._text(chain, items) for chain, items in groups]
        counts = self._count_all(texts)
        for (chain, items), text, count in zip(groups, texts, counts, strict=True):
            if count <= self._max:
                out.append((text, count))
            else:
                self._resplit(chain, items, out)

    def _count_all(self, texts: list[str]) -> list[int]:
        """Counts of ``texts``, through the tokenizer's optional ``count_batch(texts)`` when it has one
        (one parallel call instead of one call per chunk)."""
        batch = getattr(self._tokenizer, "count_batch", None)
        if callable(batch):
            return [int(n) for n in batch(texts)]
        return [self._tokenizer.count(text) for text in texts]

    def _resplit(self, chain: str, items: list[_Node], out: list[tuple[str, int]]) -> None:
        """``items`` overflow together: emit the longest run that fits (binary search) and go on."""
        while items:
            fits, fits_text, fits_count, too_many = 0, "", 0, len(items)
            while too_many - fits > 1:
                mid = (fits + too_many) // 2
                text = self._text(chain, items[:mid])
                count = self._tokenizer.count(text)
                if count <= self._max:
                    fits, fits_text, fits_count = mid, text, count
                else:
                    too_many = mid
            if fits == 0:
                self._force(items[0], out)
                items = items[1:]
            else:
                out.append((fits_text, fits_count))
                items = items[fits:]
            if items:
                text = self._text(chain, items)
                count = self._tokenizer.count(text)
                if count <= self._max:
                    out.append((text, count))
                    return

    def _force(self, node: _Node, out: list[tuple[str, int]]) -> None:
        """Split ``node``, which overflows on its own."""
        if node.children:
            groups: list[_Group] = []
            self._pack(node.chain, node.chain_tokens, node.children, groups)
            self._finish(groups, out)
            return
        if node.is_piece:
            spans = self._tokenizer.spans(node.text)
            pieces = split_text(node.text, spans, -(-len(spans) // 2)) if len(spans) > 1 else []
            if len(pieces) > 1:
                halves = [_Node("", p, node.chain, node.chain_tokens, n, is_piece=True) for p, n in pieces]
                self._finish([(node.chain, [half]) for half in halves], out)
                return
        # A single token (or a prefix-only node) that still overflows: nothing left to cut.
        text = self._text(node.chain, [node]) if node.is_piece else node.chain
        out.append((text, self._tokenizer.count(text)))

    @staticmethod
    def _text(chain: str, items: list[_Node]) -> str:
        parts = [chain]
        for item in items:
            _render(item, parts)
        return "".join(parts)
