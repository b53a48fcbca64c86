"""The keyword analyzer, script by script: each expected value follows from a rule of ``search/analysis.py``
(NFKC and case folding, word boundaries, CJK unigrams and bigrams, diacritics, Arabic normalisation and light
stemming, Porter on ASCII words only, stopwords per language on queries)."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import snowballstemmer

from alexandria.search.analysis import (
    _STEM_CACHE,
    MAX_QUERY_TERMS,
    arabic_stem,
    document_terms,
    dominant_script,
    indexed_text,
    query_terms,
)

PORTER = snowballstemmer.stemmer("porter")


GERMAN = snowballstemmer.stemmer("german")


def porter(*words: str) -> list[str]:
    return [PORTER.stemWord(w) for w in words]


def german(*words: str) -> list[str]:
    return [GERMAN.stemWord(w) for w in words]


# --- English ----------------------------------------------------------------------------------------------------------
def test_english_is_case_folded_and_porter_stemmed() -> None:
    assert document_terms("The Runners were RUNNING") == ["the", "runner", "were", "run"]
    assert document_terms("caresses ponies") == ["caress", "poni"]  # Porter's own examples
    assert document_terms("is as us") == ["is", "as", "us"]  # words under 3 letters are not stemmed (as FTS5)


def test_english_queries_drop_function_words_unless_nothing_else_is_left() -> None:
    assert query_terms("What is the effect of caffeine on sleep?") == porter("effect", "caffeine", "sleep")
    assert query_terms("the of") == ["the", "of"]
    assert query_terms("the sleep sleeping slept") == ["sleep", "slept"]  # distinct terms, after stemming


def test_a_query_without_common_words_gets_both_stems_if_it_is_spelt_as_german() -> None:
    # no English or German function word and no German spelling: English
    assert query_terms("runners sleeping") == porter("runners", "sleeping")
    # a German spelling (sch): each word's Porter stem, then its German stem where that differs
    expected = [*porter("schnelle"), *german("schnelle"), *porter("runners"), *german("runners")]
    assert query_terms("schnelle runners") == list(dict.fromkeys(expected))
    assert len(query_terms("schnelle runners")) == 3  # schnell (both), runner (Porter), runn (German)


def test_words_are_letters_digits_and_marks() -> None:
    assert document_terms("snake_case, e-mail; covid19!") == ["snake", "case", "e", "mail", "covid19"]
    assert document_terms("ＡＢＣ１２３") == ["abc123"]  # full-width forms folded by NFKC
    assert document_terms("हिन्दी किताब") == ["हिन्दी", "किताब"]  # Devanagari vowel signs are marks, not separators


# --- German and other Latin-script languages ---------------------------------------------------------------------
def test_german_diacritics_and_sharp_s_fold() -> None:
    assert document_terms("Universität") == document_terms("Universitat") == porter("universitat")
    assert document_terms("Straße") == document_terms("STRASSE") == porter("strasse")  # ß case-folds to ss
    assert document_terms("Ærø") == ["ærø"]  # letters without a decomposition are kept, and not stemmed


def test_german_text_is_stemmed_in_german() -> None:
    # more German common words (der, und, ist) than English ones: the German stemmer for every ASCII word
    assert document_terms("Der Hund und die Katzen") == ["der", *german("hund"), "und", "die", *german("katzen")]
    assert document_terms("The dogs and the cats") == ["the", *porter("dogs"), "and", "the", *porter("cats")]


def test_german_queries_drop_german_function_words() -> None:
    assert query_terms("Wer ist der Präsident von Frankreich?") == german("prasident", "frankreich")
    assert query_terms("die Katzen") == german("die", "katzen")  # `die` is an English word too: kept


# --- Greek and Cyrillic ------------------------------------------------------------------------------------------
def test_greek_loses_accents_cyrillic_keeps_its_letters() -> None:
    assert document_terms("Καλημέρα") == ["καλημερα"]
    assert document_terms("йод") != document_terms("иод")  # й is a letter of its own, not и with a breve
    assert document_terms("Москва") == ["москва"]  # no English stemmer on Cyrillic


# --- Chinese, Japanese, Korean -----------------------------------------------------------------------------------
def test_chinese_runs_become_unigrams_and_bigrams() -> None:
    assert document_terms("北京大学") == ["北", "京", "大", "学", "北京", "京大", "大学"]
    assert document_terms("北京，大学") == ["北", "京", "北京", "大", "学", "大学"]  # punctuation ends a run
    assert query_terms("的") == ["的"]  # English stopwords never apply to Chinese


def test_chinese_query_terms_are_distinct_and_kept() -> None:
    assert query_terms("大学的大学") == ["大", "学", "的", "大学", "学的", "的大"]


def test_japanese_kanji_and_kana_share_a_run() -> None:
    assert document_terms("東京タワー") == ["東", "京", "タ", "ワ", "ー", "東京", "京タ", "タワ", "ワー"]
    assert document_terms("ｶﾅ") == document_terms("カナ") == ["カ", "ナ", "カナ"]  # half-width katakana folded


def test_korean_words_split_on_spaces_then_pair() -> None:
    assert document_terms("서울 대학교") == ["서", "울", "서울", "대", "학", "교", "대학", "학교"]


def test_latin_next_to_han_splits_at_the_script_change() -> None:
    assert document_terms("iPhone手机") == [*porter("iphone"), "手", "机", "手机"]


# --- Arabic ------------------------------------------------------------------------------------------------------
def test_arabic_is_normalised() -> None:
    # harakat and tatweel removed; hamza forms of alef to bare alef; alef maksura to yeh; teh marbuta to heh
    assert document_terms("كِتَاب") == document_terms("كـتـاب") == document_terms("كتاب") == ["كتاب"]
    assert document_terms("أحمد") == document_terms("إحمد") == document_terms("آحمد") == ["احمد"]
    assert document_terms("مدرسة") == document_terms("مدرسه")


def test_arabic_light_stemming() -> None:
    assert arabic_stem("والكتاب") == "كتاب"  # one prefix (وال)
    assert arabic_stem("كتابها") == "كتاب"  # suffix ها
    assert arabic_stem("المعلمون") == "معلم"  # prefix ال, suffix ون
    assert arabic_stem("ولد") == "ولد"  # و is a prefix only of words of four letters or more
    assert arabic_stem("ال") == "ال"  # two letters must be left
    assert document_terms("وَالكِتَابُ المدرسة") == ["كتاب", "مدرس"]  # normalised, then stemmed (مدرسه -> مدرس)


def test_arabic_queries_drop_arabic_function_words() -> None:
    assert query_terms("ما هي عاصمة مصر؟") == ["عاصم", "مصر"]
    assert query_terms("إلى") == ["ال"]  # a stopword alone is kept: normalised (الي), then its suffix ي stemmed


# --- queries and the indexed text --------------------------------------------------------------------------------
def test_query_terms_are_capped() -> None:
    words = [f"w{i}x" for i in range(MAX_QUERY_TERMS + 10)]
    assert len(query_terms(" ".join(words))) == MAX_QUERY_TERMS


def test_indexed_text_is_the_terms_split_by_spaces() -> None:
    for text in ("北京大学 and the Runners", "وَالكِتَابُ", "Ｓｔｒａßｅ"):
        assert indexed_text(text).split(" ") == document_terms(text)
    assert indexed_text("...") == ""


def test_threads_stem_alike() -> None:
    """Snowball stemmers keep state while they stem: threads analysing at once must each get the right stems."""
    texts = [f"the runners were running generously {i}" for i in range(200)]
    expected = [document_terms(t) for t in texts]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible (a shared stemmer fails half the rounds)
    try:
        with ThreadPoolExecutor(8) as pool:
            for _ in range(20):
                _STEM_CACHE.clear()  # make every thread stem, not read the cache
                assert list(pool.map(document_terms, texts)) == expected
    finally:
        sys.setswitchinterval(interval)


def test_the_dominant_script_of_a_text_is_that_of_most_of_its_letters() -> None:
    cases = {
        "What is the role of p53 in apoptosis?": "LATIN",
        "Wie heißt die Hauptstadt Österreichs?": "LATIN",
        "中国的首都是哪里": "CJK",
        "東京タワーはどこですか": "CJK",  # Han and kana together
        "한국어 질문입니다": "CJK",
        "ما هي عاصمة مصر؟": "ARABIC",
        "Привет, мир": "CYRILLIC",
        "שלום עולם": "HEBREW",
        "COVID-19 患者的症状有哪些": "CJK",
        "BRCA1 突变": "LATIN",  # five Latin letters against two Han characters
        "12345 ?!": None,
    }
    assert {text: dominant_script(text) for text in cases} == cases
