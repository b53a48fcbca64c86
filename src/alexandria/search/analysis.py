"""The keyword analyzer: how text becomes search terms, the same for documents and queries and for every engine
(SQLite FTS5 is fed its output; PostgreSQL's postings are its output), so the engines agree by construction.

Rules, in order:
- NFKC (full-width and compatibility forms folded: ``Ａ`` -> ``a``, half-width katakana -> katakana), then case
  folding (``ß`` -> ``ss``).
- Words are runs of letters, digits and combining marks (so Devanagari or Arabic words keep their vowel signs);
  everything else separates, the underscore included.
- Chinese, Japanese and Korean (Han, kana, hangul), written without spaces between words, become each character
  and each overlapping pair of characters of a run (unigrams and bigrams): on ``xquadr-zh`` this scored nDCG@10
  0.834 against 0.819 for bigrams alone, 0.831 unigrams, 0.815 jieba's segmentation and 0.711 trigrams.
- Latin and Greek words lose their diacritics (``é`` -> ``e``; FTS5's ``remove_diacritics``), Hebrew its points;
  Cyrillic keeps them (``й`` is not ``и``).
- Arabic is normalised as Lucene's Arabic normaliser does: diacritics (harakat) and tatweel removed, alef forms
  (``أ إ آ ٱ``) -> ``ا``, ``ى`` -> ``ي``, ``ة`` -> ``ه``; then light-stemmed as Lucene's Arabic stemmer does
  (``والكتاب`` -> ``كتاب``): on ``xquadr-ar`` 0.683 -> 0.770 (Snowball's Arabic stemmer 0.758, and ten times slower).
- Words written in ASCII letters (after folding), of 3 to 64 characters, are stemmed in the text's language:
  German (Snowball) when the text uses more of German's common words (``der``, ``und``, ``ist`` ...) than of
  English's (``the``, ``of``, ``is`` ...), else English (Porter, as FTS5's ``porter``; its C implementation also
  folds ``-bli`` and ``-logi``, which Snowball's strict Porter keeps). A query with neither language's common
  words gets both stems of each word (OR-ed; a stem no chunk holds costs nothing) if it has a German spelling
  (``sch``, ``ei``, an umlaut, ``-ung`` ...), else the English one. Measured on whole documents: ``xquadr-de``
  0.763 (Porter for all) -> 0.774 (German stemming of every text, an oracle, 0.793; both stems for every query
  without common words 0.780 but SciFact -0.0013); SciFact 0.6851 -> 0.6851. No other script gets an English
  stemmer.
- Queries drop stopwords (the function words of English and German, Arabic's), judged on the folded word before
  stemming, unless nothing else is left.

``ANALYZER_VERSION`` names these rules: a store whose keyword index was built by other rules re-analyses it.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections.abc import Iterator

import snowballstemmer

ANALYZER_VERSION = 1
MAX_QUERY_TERMS = 64
STEM_MIN, STEM_MAX = 3, 64  # the lengths of the words Porter stems, as in FTS5's porter (``is`` stays ``is``)

# Scripts written without spaces between words (bigrams): Han (with its radicals, iteration and ideographic number
# marks), hiragana, katakana, hangul (syllables and jamo).
_CJK_RANGES = (
    "\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3031-\u3035\u303b\u3041-\u309f\u30a0-\u30ff\u3130-\u318f"
    "\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7af\ud7b0-\ud7ff\uf900-\ufaff\u1100-\u11ff"
    "\U00020000-\U0003ffff"
)
_CJK_RUN = re.compile(f"[{_CJK_RANGES}]+")
_HAS_CJK = re.compile(f"[{_CJK_RANGES}]")
_ARABIC = re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff]")
_ARABIC_DROP = re.compile("[\u0610-\u061a\u0640\u064b-\u065f\u0670\u06d6-\u06ed]")  # harakat, Quranic marks, tatweel
_ARABIC_FOLD = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه"})
_HEBREW_POINTS = re.compile("[\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7]")


def _marks() -> str:
    """A character class body of every combining mark (category M*) of the planes that have them."""
    ranges: list[str] = []
    start = prev = -2
    for cp in [*range(0x20000), *range(0xE0100, 0xE01F0)]:
        if unicodedata.category(chr(cp))[0] != "M":
            continue
        if cp != prev + 1:
            if start >= 0:
                ranges.append(_range(start, prev))
            start = cp
        prev = cp
    ranges.append(_range(start, prev))
    return "".join(ranges)


def _range(first: int, last: int) -> str:
    return re.escape(chr(first)) if first == last else f"{re.escape(chr(first))}-{re.escape(chr(last))}"


@functools.cache
def _word_pattern() -> re.Pattern[str]:
    """A word: letters and digits (``\\w`` less the underscore) and combining marks."""
    return re.compile(f"(?:[^\\W_]|[{_marks()}])+")


_STEMMERS = threading.local()  # a Snowball stemmer keeps its word in its own fields: one per thread


def _stemmer(language: str) -> snowballstemmer.stemmer:
    found: dict[str, snowballstemmer.stemmer] | None = getattr(_STEMMERS, "by_language", None)
    if found is None:
        found = _STEMMERS.by_language = {}
    stemmer = found.get(language)
    if stemmer is None:
        stemmer = found[language] = snowballstemmer.stemmer(language)
    return stemmer


_STEM_CACHE: dict[tuple[str, str], str] = {}


def _stem(language: str, word: str) -> str:
    stem = _STEM_CACHE.get((language, word))
    if stem is None:
        stem = _stemmer(language).stemWord(word)
        if len(_STEM_CACHE) > 200_000:
            _STEM_CACHE.clear()
        _STEM_CACHE[(language, word)] = stem
    return stem


def _fold_word(word: str) -> str:
    """A non-CJK word's folded form: diacritics off Latin and Greek, points off Hebrew, Arabic normalised."""
    if word.isascii():
        return word
    if _ARABIC.search(word):
        return _ARABIC_DROP.sub("", word).translate(_ARABIC_FOLD)
    decomposed = unicodedata.normalize("NFD", word)
    kept: list[str] = []
    base = ""
    for ch in decomposed:
        if unicodedata.combining(ch) and base and (base < "\u0400" or "\u1e00" <= base <= "\u1fff"):
            continue  # a diacritic on a Latin or Greek letter
        if not unicodedata.combining(ch):
            base = ch
        kept.append(ch)
    return _HEBREW_POINTS.sub("", unicodedata.normalize("NFC", "".join(kept)))


# English function words (as Lucene's English analyzer drops them), German ones that are not also English words
# (``die``, ``war``, ``man``, ``also`` are), and Arabic ones (in their normalised spelling: ``أن`` is ``ان``).
STOPWORDS_LATIN = frozenset(
    (
        "a an and are as at be but by do does did for from had has have how i if in into is it its of on or so "
        "such that the their then there these they this to was were what when where which while who whom why will "
        "with would you your "
        "der das dem den des ein eine einem einen einer eines und ist sind wurde wurden werden wird von vom zu zum "
        "zur mit sich auf fur im wie wer wen wem wessen welche welcher welches welchen was wann wo warum nicht oder "
        "auch als bei aus nach durch uber um es sie er wir ihr dass hat hatte haben sein seine ihre"
    ).split()
)
STOPWORDS_ARABIC = frozenset(
    _fold_word(w)
    for w in (
        "في من على الى عن ما هو هي هذا هذه ذلك تلك التي الذي الذين ان او و ثم كان كانت يكون قد لا لم لن مع عند بين "
        "كل بعد قبل حتى اذا كيف متى اين لماذا ماذا هل اي كم اول ايضا"
    ).split()
)


def _cjk_terms(run: str, bigrams: bool = True) -> Iterator[str]:
    """Each character, then each overlapping pair of characters (unless ``bigrams`` is off: ``alexandria eval``
    compares that variant, ``search/analyzer_variants.py``)."""
    yield from run
    if bigrams:
        for i in range(len(run) - 1):
            yield run[i : i + 2]


# Lucene's light Arabic stemmer (Larkey et al.'s light10): at most one prefix, then every suffix in turn, each only
# when two letters are left (and ``و`` only from words of four letters or more).
_ARABIC_PREFIXES = ("ال", "وال", "بال", "كال", "فال", "لل", "و")
_ARABIC_SUFFIXES = ("ها", "ان", "ات", "ون", "ين", "يه", "ه", "ي")  # Lucene's ية and ة are يه and ه, normalised


def arabic_stem(word: str) -> str:
    """A normalised Arabic word, light-stemmed."""
    for prefix in _ARABIC_PREFIXES:
        if len(prefix) == 1 and len(word) < 4:
            continue
        if word.startswith(prefix) and len(word) >= len(prefix) + 2:
            word = word[len(prefix) :]
            break
    for suffix in _ARABIC_SUFFIXES:
        if word.endswith(suffix) and len(word) >= len(suffix) + 2:
            word = word[: -len(suffix)]
    return word


# The stemmer of a text's ASCII words: the language whose common words it uses more (none of either: English for a
# document; for a query, whose language matters as much, both stems of each word).
STEMMER_OF = {"english": "porter", "german": "german"}
LANGUAGE_HINTS = {
    "english": frozenset("the of and is are was were to that with for this which from".split()),
    "german": frozenset(
        "der die das und ist sind von zu mit den dem des ein eine nicht sich auf im wurde auch".split()
    ),
}
# Spellings common in German words and rare in English ones (``ei`` is in ``protein``: such a query only gets
# both stems, as a German one does).
_GERMAN_SPELLING = re.compile(r"sch|tz|ß|[äöü]|ei|(?:ung|keit|heit|lich|chen)\b")
_ASCII, _ARABIC_WORD, _OTHER, _CJK = range(4)


_ASCII_WORD = re.compile(r"[a-z0-9]+")  # a word of an ASCII text (NFKC and case folding are lower() there)


def _tokens(text: str, cjk_bigrams: bool = True) -> list[tuple[str, int]]:
    """``(folded word or CJK term, kind)`` in order."""
    if text.isascii():
        return [(word, _ASCII) for word in _ASCII_WORD.findall(text.lower())]
    out: list[tuple[str, int]] = []
    normal = unicodedata.normalize("NFKC", text).casefold()
    has_cjk = _HAS_CJK.search(normal) is not None
    for match in _word_pattern().finditer(normal):
        word = match.group()
        if not has_cjk or _HAS_CJK.search(word) is None:
            _add_word(out, word)
            continue
        at = 0
        for run in _CJK_RUN.finditer(word):
            if run.start() > at:
                _add_word(out, word[at : run.start()])
            out.extend((term, _CJK) for term in _cjk_terms(run.group(), cjk_bigrams))
            at = run.end()
        if at < len(word):
            _add_word(out, word[at:])
    return out


def _add_word(out: list[tuple[str, int]], word: str) -> None:
    folded = _fold_word(word)
    if folded:
        out.append((folded, _ASCII if folded.isascii() else _ARABIC_WORD if _ARABIC.search(folded) else _OTHER))


def text_language(tokens: list[tuple[str, int]]) -> str | None:
    """The language whose common words the text's ASCII words hold most of (English on a tie), None if neither's."""
    words = [word for word, kind in tokens if kind == _ASCII]
    counts = {language: sum(map(hints.__contains__, words)) for language, hints in LANGUAGE_HINTS.items()}
    best = max(counts.values())
    return None if best == 0 else next(lang for lang, n in counts.items() if n == best)


def _terms(word: str, kind: int, languages: tuple[str, ...]) -> list[str]:
    if kind == _ASCII and STEM_MIN <= len(word) <= STEM_MAX:
        if len(languages) == 1:
            return [_stem(STEMMER_OF[languages[0]], word)]
        return list(dict.fromkeys(_stem(STEMMER_OF[lang], word) for lang in languages))
    if kind == _ARABIC_WORD:
        return [arabic_stem(word)]
    return [word]


def dominant_script(text: str) -> str | None:
    """The writing system of most of the text's letters, as the first word of their Unicode names (``LATIN``,
    ``CYRILLIC``, ``ARABIC``, ``HEBREW``, ``GREEK``, ``DEVANAGARI`` ...), with Han, kana and hangul together as
    ``CJK``; ``None`` when the text has no letter."""
    counts: dict[str, int] = {}
    for ch in text:
        if not ch.isalpha():
            continue
        script = "CJK" if _HAS_CJK.match(ch) else unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]
        counts[script] = counts.get(script, 0) + 1
    return max(counts, key=lambda s: (counts[s], s)) if counts else None


def document_terms(text: str, cjk_bigrams: bool = True) -> list[str]:
    """Every term of a text, in order (repeats included: a term's frequency and the text's length are counted on
    this list). ``cjk_bigrams=False`` (CJK as single characters) is a variant ``alexandria eval`` compares."""
    tokens = _tokens(text, cjk_bigrams)
    stemmer = STEMMER_OF[text_language(tokens) or "english"]
    terms: list[str] = []
    for word, kind in tokens:
        if kind == _ASCII:
            terms.append(_stem(stemmer, word) if STEM_MIN <= len(word) <= STEM_MAX else word)
        else:
            terms += _terms(word, kind, ())
    return terms


def query_terms(query: str, cjk_bigrams: bool = True) -> list[str]:
    """The distinct terms of a query, stopwords dropped (unless nothing else is left), at most
    ``MAX_QUERY_TERMS``."""
    tokens = _tokens(query, cjk_bigrams)
    language = text_language(tokens)
    if language is not None:
        languages: tuple[str, ...] = (language,)
    elif _GERMAN_SPELLING.search(unicodedata.normalize("NFKC", query).casefold()):
        languages = tuple(LANGUAGE_HINTS)
    else:
        languages = ("english",)
    every: dict[str, None] = {}
    kept: dict[str, None] = {}
    for word, kind in tokens:
        stop = kind != _CJK and (word in STOPWORDS_LATIN or word in STOPWORDS_ARABIC)
        for term in _terms(word, kind, languages):
            every.setdefault(term)
            if not stop:
                kept.setdefault(term)
    return list(kept or every)[:MAX_QUERY_TERMS]


def indexed_text(text: str) -> str:
    """The text an engine's own tokenizer indexes in place of ``text``: the terms, space-separated (each term is
    letters, digits and marks only, so a tokenizer that splits on ASCII spaces and punctuation, FTS5's ``ascii``,
    finds exactly these terms)."""
    return " ".join(document_terms(text))
