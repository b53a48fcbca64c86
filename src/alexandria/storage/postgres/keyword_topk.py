"""Exact BM25 top-k on PostgreSQL whose cost follows k and the query's rare terms, not every matching chunk.

A query's common terms can match most of a data source's chunks; summing every posting of every term (a plain
``GROUP BY``) then costs as much as the matches. Instead (MaxScore, Turtle and Flood 1995, over impact-ordered
postings):

1. **A first look.** Each term's best ``FIRST_DEPTH`` postings are read from an index that orders a term's postings by
   their *impact*, and every chunk seen is scored exactly (all the query's terms, one index seek per chunk). The k-th
   best of those exact scores, ``θ``, is a lower bound of the final k-th score.
2. **Essential terms.** A term's contribution to any chunk is at most ``U`` (its best impact, bounded as below). Terms
   sorted by ``U``: the longest prefix whose ``U`` sum stays under ``θ`` is *non-essential* — a chunk matching only
   those terms scores under ``θ`` and cannot enter the top k. Only the postings of the other, *essential* terms (the
   rare ones, whose idf is high and whose postings are few) are aggregated, into partial scores.
3. **Exact top k.** A chunk whose partial score plus the non-essential terms' ``U`` sum reaches ``θ`` may still enter;
   those few are scored exactly with index seeks. The result is the exact BM25 top k (ties by chunk id).

When the essential terms' postings exceed ``MAX_POSTINGS`` (a query of only common words), :func:`top_k` returns
``None`` and the caller aggregates every posting: exact too, no slower than before.

**Impact order.** BM25's contribution of a term to a chunk is ``idf · (k1 + 1) · x / (x + k1)`` with
``x = tf / (1 - b + b · length / avgdl)``, increasing in ``x``. The index orders a term's postings by ``x`` computed
with a fixed reference length ``REF_LENGTH`` instead of the data source's current average (an index expression must
be immutable). The true ``x`` is within a known factor of it: ``x ≤ x_ref · max(1, avgdl / REF_LENGTH)``, because
``1 - b + b·L/a`` changes by at most that factor when ``a`` moves to ``REF_LENGTH``. So ``U`` is an exact upper
bound however far the average has drifted (a drift only loosens it).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import psycopg

from alexandria.search.keyword import BM25_B, BM25_K1
from alexandria.storage.base import ScoredId

REF_LENGTH = 150.0  # the index expression's average length (migration 0004): keep them equal
# x at the reference length, exactly as the index expression writes it (the planner matches the text)
IMPACT_SQL = "(tf::float8 / (0.25::float8 + 0.005::float8 * length::float8))"
FIRST_DEPTH = 64
MAX_POSTINGS = 200_000  # essential postings past which aggregating them all is as cheap


def _contribution(idf: float, x: float) -> float:
    return idf * (BM25_K1 + 1.0) * x / (x + BM25_K1)


def bm25_term(idf: float, tf: int, length: int, avgdl: float) -> float:
    """One term's BM25 contribution to a chunk."""
    return _contribution(idf, tf / (1.0 - BM25_B + BM25_B * length / avgdl))


def top_k(
    conn: psycopg.Connection,
    data_source_id: int,
    lexemes: Sequence[str],
    idfs: Sequence[float],
    freqs: Sequence[int],
    avgdl: float,
    k: int,
) -> list[ScoredId] | None:
    """The k best chunks by BM25 for ``lexemes`` (OR; ``idfs`` and posting counts ``freqs`` alike ordered), exact,
    best first (ties by chunk id); ``None`` when the caller should aggregate every posting instead."""
    if k <= 0 or not lexemes:
        return []
    drift = max(1.0, avgdl / REF_LENGTH)  # the true x is at most x_ref times this
    idf_of = dict(zip(lexemes, idfs, strict=True))
    df_of = dict(zip(lexemes, freqs, strict=True))
    rows = conn.execute(
        "SELECT w.lexeme, p.chunk_id, p.x FROM unnest(%s::text[]) AS w(lexeme) CROSS JOIN LATERAL ("
        f"SELECT chunk_id, {IMPACT_SQL} AS x FROM chunk_terms "
        f"WHERE data_source_id = %s AND lexeme = w.lexeme ORDER BY {IMPACT_SQL} DESC LIMIT %s) AS p",
        (list(lexemes), data_source_id, max(FIRST_DEPTH, k)),
    ).fetchall()
    best_x: dict[str, float] = {}
    seen: set[int] = set()
    for lexeme, chunk_id, x in rows:
        best_x[lexeme] = max(best_x.get(lexeme, 0.0), float(x))
        seen.add(int(chunk_id))
    exact = exact_scores(conn, sorted(seen), lexemes, idf_of, avgdl)
    if len(seen) == sum(df_of.values()) or len(exact) < k:  # every posting was read: nothing else can match
        return _best(exact, k)
    theta = _best(exact, k)[-1].score
    bound = {lex: _contribution(idf_of[lex], best_x.get(lex, 0.0) * drift) for lex in lexemes}
    non_essential: list[str] = []
    total = 0.0
    for lex in sorted(lexemes, key=lambda t: bound[t]):
        if total + bound[lex] >= theta:
            break
        non_essential.append(lex)
        total += bound[lex]
    essential = [lex for lex in lexemes if lex not in non_essential]
    if sum(df_of[lex] for lex in essential) > MAX_POSTINGS:
        return None
    k1, b = BM25_K1, BM25_B  # constants of the formula, inlined (never input)
    partial = conn.execute(
        f"SELECT p.chunk_id, sum(w.idf * p.tf * {k1 + 1!r} / (p.tf + {k1!r} * (1 - {b!r} + {b!r} * p.length / %s))) "
        "FROM chunk_terms p JOIN unnest(%s::text[], %s::float8[]) AS w(lexeme, idf) ON w.lexeme = p.lexeme "
        "WHERE p.data_source_id = %s GROUP BY p.chunk_id",
        (avgdl, essential, [idf_of[lex] for lex in essential], data_source_id),
    ).fetchall()
    # may still reach θ once its non-essential terms are counted (>=: a tie at θ may win on chunk id)
    reach = theta * (1 - 1e-9)  # SQL and Python round the same sums apart by ulps
    rest = sorted(int(pk) for pk, score in partial if float(score) + total >= reach and int(pk) not in exact)
    exact.update(exact_scores(conn, rest, lexemes, idf_of, avgdl))
    return _best(exact, k)


def _best(scores: dict[int, float], k: int) -> list[ScoredId]:
    return [ScoredId(pk, s) for pk, s in heapq.nsmallest(k, scores.items(), key=lambda item: (-item[1], item[0]))]


def exact_scores(
    conn: psycopg.Connection,
    chunk_ids: list[int],
    lexemes: Sequence[str],
    idf_of: dict[str, float],
    avgdl: float,
) -> dict[int, float]:
    """Every given chunk's BM25 over all the query's terms, from its own postings (index-only lookups)."""
    if not chunk_ids:
        return {}
    found = conn.execute(
        # one (chunk, lexeme) index seek per chunk: the ids are the data source's own (read from its postings)
        "SELECT p.chunk_id, p.lexeme, p.tf, p.length FROM unnest(%s::bigint[]) AS c(id) CROSS JOIN LATERAL ("
        "SELECT chunk_id, lexeme, tf, length FROM chunk_terms WHERE chunk_id = c.id AND lexeme = ANY(%s) "
        "LIMIT %s) AS p",
        (chunk_ids, list(lexemes), len(lexemes)),  # the LIMIT keeps the plan a loop of seeks
    ).fetchall()
    scores: dict[int, float] = {}
    for chunk_id, lexeme, tf, length in found:
        pk = int(chunk_id)
        scores[pk] = scores.get(pk, 0.0) + bm25_term(idf_of[str(lexeme)], int(tf), int(length), avgdl)
    return scores
