"""OpenAI's static chunking strategy: overlapping windows of the model's tokens.

A window holds at most ``max_tokens`` tokens; the next one starts ``overlap`` tokens before the previous one ends
(so consecutive chunks share about ``overlap`` tokens). Both cuts move back to the start of a word when the window
allows, so no word is cut in two (a window that is one word is cut where the tokens run out). Lengths are counted
with the embedding model's own tokenizer (``Tokenizer.spans``), as OpenAI counts them with its own.
"""

from __future__ import annotations

from collections.abc import Sequence

Span = tuple[int, int, bool]  # (start, end, starts_word) of one token, in characters


def token_windows(text: str, spans: Sequence[Span], max_tokens: int, overlap: int) -> list[str]:
    """The chunks of ``text`` (whose tokens are ``spans``), in order; blank windows are dropped."""
    if max_tokens < 1 or not 0 <= overlap < max_tokens:
        raise ValueError(f"need 1 <= max_tokens and 0 <= overlap < max_tokens, got {max_tokens}, {overlap}")
    n = len(spans)
    out: list[str] = []
    start = 0
    while start < n:
        end = min(start + max_tokens, n)
        if end < n:
            cut = end  # the first token of what follows: cut before a token that starts a word
            while cut > start + 1 and not spans[cut][2]:
                cut -= 1
            if spans[cut][2]:
                end = cut
        piece = text[spans[start][0] : spans[end - 1][1]].strip()
        if piece:
            out.append(piece)
        if end >= n:
            break
        start = _next_start(spans, start, end, max(end - overlap, start + 1))
    return out


def _next_start(spans: Sequence[Span], start: int, end: int, wanted: int) -> int:
    """Where the window after ``start..end`` starts: at ``wanted`` if a word starts there, else at the nearest word
    start before it (a little more overlap), else after it (a little less); ``end`` when no word starts in between."""
    back = wanted
    while back > start + 1 and not spans[back][2]:
        back -= 1
    if spans[back][2]:
        return back
    forward = wanted
    while forward < end and not spans[forward][2]:
        forward += 1
    return forward
