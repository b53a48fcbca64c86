"""Tests for Dify's processing rules (validation, cleaning, splitting).

Cases marked "Dify:" are ported from Dify's own unit tests (``api/tests/unit_tests/core/rag/cleaner/
test_clean_processor.py``, ``.../splitter/test_text_splitter.py``, ``.../splitter/
test_fixed_text_splitter_invisible_delimiters.py``, ``api/tests/unit_tests/utils/test_text_processing.py``);
the exact chunk lists were computed by hand from Dify's algorithm.
"""

from __future__ import annotations

import random
import re

import pytest
from pydantic import BaseModel

from alexandria.ingest.dify_rules import (
    AUTOMATIC_RULE,
    AUTOMATIC_RULES,
    DifyPayload,
    ParentChunk,
    ProcessRule,
    ProcessRuleError,
    Segmentation,
    SplitChunk,
    _fixed_recursive_split,
    _merge_splits,
    _recursive_split,
    _split_text_with_regex,
    check_segment_length,
    clean_text,
    parse_process_rule,
    remove_leading_symbols,
    split_hierarchical,
    split_text,
    text_hash,
)

SEPARATORS = ("\n\n", "。", ". ", " ", "")


def custom(
    separator: str, max_tokens: int, overlap: int = 0, pre: list[dict[str, object]] | None = None
) -> ProcessRule:
    seg = {"separator": separator, "max_tokens": max_tokens, "chunk_overlap": overlap}
    return parse_process_rule({"mode": "custom", "rules": {"pre_processing_rules": pre or [], "segmentation": seg}})


def hierarchical(
    parent_mode: str | None,
    sub: dict[str, object] | None,
    seg: dict[str, object] | None = None,
    pre: list[dict[str, object]] | None = None,
) -> ProcessRule:
    rules: dict[str, object] = {
        "pre_processing_rules": pre or [],
        "segmentation": seg or {"separator": "\\n\\n", "max_tokens": 500},
        "parent_mode": parent_mode,
        "subchunk_segmentation": sub,
    }
    return parse_process_rule({"mode": "hierarchical", "rules": rules})


def with_steps(*steps: tuple[str, bool]) -> ProcessRule:
    on = {i for i, e in steps if e}
    return ProcessRule(
        mode="custom",
        remove_extra_spaces="remove_extra_spaces" in on,
        remove_urls_emails="remove_urls_emails" in on,
        segmentation=Segmentation("\n", 500, 0),
        parent_mode=None,
        subchunk_segmentation=None,
        pre_processing_rules=steps,
    )


def contents(chunks: list[SplitChunk]) -> list[str]:
    return [c.content for c in chunks]


# --------------------------------------------------------------------------------------------------
# Validation


class TestParseProcessRule:
    def test_none_is_automatic(self) -> None:
        rule = parse_process_rule(None)
        assert rule == AUTOMATIC_RULE
        assert rule.mode == "automatic"
        assert (rule.segmentation.max_tokens, rule.segmentation.chunk_overlap) == (500, 50)
        assert rule.remove_extra_spaces is True
        assert rule.remove_urls_emails is False

    def test_automatic_discards_rules_but_pydantic_still_checks_them(self) -> None:
        rule = parse_process_rule({"mode": "automatic", "rules": {"segmentation": {"max_tokens": 10}}})
        assert rule == AUTOMATIC_RULE
        with pytest.raises(ProcessRuleError, match=r"rules\.segmentation\.max_tokens\n  Input should be a valid int"):
            parse_process_rule({"mode": "automatic", "rules": {"segmentation": {"max_tokens": "many"}}})

    def test_pydantic_messages(self) -> None:
        with pytest.raises(ProcessRuleError) as e:
            parse_process_rule({"mode": "manual"})
        assert str(e.value).startswith(
            "1 validation error for ProcessRule\nmode\n  Input should be 'automatic', 'custom' or 'hierarchical' "
            "[type=literal_error, input_value='manual', input_type=str]"
        )
        with pytest.raises(ProcessRuleError, match=r"^1 validation error for ProcessRule\nmode\n  Field required"):
            parse_process_rule({})
        with pytest.raises(ProcessRuleError, match="Input should be a valid dictionary or instance of Rule"):
            parse_process_rule({"mode": "custom", "rules": 5})
        with pytest.raises(ProcessRuleError, match=r"^2 validation errors for ProcessRule\n"):
            parse_process_rule({"mode": "custom", "rules": {"segmentation": {"separator": 3, "max_tokens": 1.5}}})

    def test_lax_coercion_like_pydantic(self) -> None:
        rule = parse_process_rule(
            {
                "mode": "custom",
                "rules": {
                    "pre_processing_rules": [{"id": "remove_urls_emails", "enabled": "true"}],
                    "segmentation": {"separator": "\n", "max_tokens": "120", "chunk_overlap": 10.0},
                },
            }
        )
        assert rule.segmentation == Segmentation("\n", 120, 10)
        assert rule.remove_urls_emails is True

    @pytest.mark.parametrize(
        ("rules", "message"),
        [
            (None, "Process rule rules is required"),
            ({}, "Process rule pre_processing_rules is required"),
            ({"segmentation": {"max_tokens": 100}}, "Process rule pre_processing_rules is required"),
            (
                {"pre_processing_rules": [{"id": "", "enabled": True}]},
                "Process rule pre_processing_rules id is required",
            ),
            ({"pre_processing_rules": []}, "Process rule segmentation is required"),
            (
                {"pre_processing_rules": [], "segmentation": {"separator": "", "max_tokens": 100}},
                "Process rule segmentation separator is required",
            ),
            (
                {"pre_processing_rules": [], "segmentation": {"max_tokens": 0}},
                "Process rule segmentation max_tokens is required",
            ),
        ],
    )
    def test_dify_checks_in_order(self, rules: dict[str, object] | None, message: str) -> None:
        with pytest.raises(ProcessRuleError) as e:
            parse_process_rule({"mode": "custom", "rules": rules})
        assert str(e.value) == message
        assert isinstance(e.value, ValueError)

    def test_missing_rules_key(self) -> None:
        with pytest.raises(ProcessRuleError, match=r"^Process rule rules is required$"):
            parse_process_rule({"mode": "hierarchical"})

    def test_defaults_and_dedup(self) -> None:
        rule = parse_process_rule(
            {
                "mode": "custom",
                "rules": {
                    "pre_processing_rules": [
                        {"id": "remove_urls_emails", "enabled": True},
                        {"id": "remove_extra_spaces", "enabled": True},
                        {"id": "remove_stopwords", "enabled": True},
                        {"id": "remove_urls_emails", "enabled": False},
                    ],
                    "segmentation": {"max_tokens": 100},
                },
            }
        )
        assert rule.segmentation == Segmentation("\n", 100, 0)  # Dify's defaults: "\n" and overlap 0
        assert rule.pre_processing_rules == (
            ("remove_urls_emails", False),  # last value wins, at the first occurrence's place
            ("remove_extra_spaces", True),
            ("remove_stopwords", True),
        )
        assert (rule.remove_extra_spaces, rule.remove_urls_emails) == (True, False)
        assert rule.parent_mode is None

    def test_hierarchical_defaults_to_paragraph(self) -> None:
        rule = hierarchical(None, {"separator": "\n", "max_tokens": 100})
        assert rule.parent_mode == "paragraph"
        assert rule.subchunk_segmentation == Segmentation("\n", 100, 0)

    def test_full_doc_does_not_need_parent_max_tokens(self) -> None:
        rule = hierarchical("full-doc", {"separator": "\n", "max_tokens": 100}, seg={"max_tokens": 0})
        assert rule.segmentation.max_tokens == 0
        check_segment_length(rule)  # only the child splitter is built
        with pytest.raises(ProcessRuleError, match=r"^Process rule segmentation max_tokens is required$"):
            hierarchical("paragraph", {"separator": "\n", "max_tokens": 100}, seg={"max_tokens": 0})

    def test_to_json(self) -> None:
        auto = AUTOMATIC_RULE.to_json()
        assert auto == {"mode": "automatic", "rules": AUTOMATIC_RULES}
        rules = auto["rules"]
        assert isinstance(rules, dict)
        rules["segmentation"]["max_tokens"] = 1  # a copy: the constant is untouched
        assert AUTOMATIC_RULES["segmentation"] == {"delimiter": "\n", "max_tokens": 500, "chunk_overlap": 50}
        rule = hierarchical(
            None, {"separator": "\\n", "max_tokens": 60, "chunk_overlap": 5}, pre=[{"id": "x", "enabled": False}]
        )
        assert rule.to_json() == {
            "mode": "hierarchical",
            "rules": {
                "pre_processing_rules": [{"id": "x", "enabled": False}],
                "segmentation": {"separator": "\\n\\n", "max_tokens": 500, "chunk_overlap": 0},
                "parent_mode": "paragraph",
                "subchunk_segmentation": {"separator": "\\n", "max_tokens": 60, "chunk_overlap": 5},
            },
        }

    def test_flags_must_agree_with_the_list(self) -> None:
        with pytest.raises(ValueError, match="disagree"):
            ProcessRule(
                "custom", True, False, Segmentation("\n", 100, 0), None, None, (("remove_extra_spaces", False),)
            )

    def test_payload_model_in_an_outer_model(self) -> None:
        class DocumentTextCreatePayload(BaseModel):
            name: str
            process_rule: DifyPayload.ProcessRule | None = None

        with pytest.raises(ValueError, match=r"for DocumentTextCreatePayload\nprocess_rule\.mode\n"):
            DocumentTextCreatePayload.model_validate({"name": "n", "process_rule": {"mode": 1}})
        payload = DocumentTextCreatePayload.model_validate(
            {"name": "n", "process_rule": {"mode": "custom", "rules": {"pre_processing_rules": []}}}
        )
        with pytest.raises(ProcessRuleError, match=r"^Process rule segmentation is required$"):
            parse_process_rule(payload.process_rule)


class TestSegmentLength:
    @pytest.mark.parametrize("max_tokens", [49, 4001, 0, -1])
    def test_bounds(self, max_tokens: int) -> None:
        rule = ProcessRule("custom", False, False, Segmentation("\n", max_tokens, 0), None, None)
        with pytest.raises(ProcessRuleError) as e:
            check_segment_length(rule)
        assert str(e.value) == "Custom segment length should be between 50 and 4000."
        with pytest.raises(ProcessRuleError, match=r"^Custom segment length should be between 50 and 4000\.$"):
            split_text("some text", rule)
        if max_tokens:  # accepted at request time: only the indexing task fails
            assert parse_process_rule(rule.to_json()).segmentation.max_tokens == max_tokens

    def test_limits_are_inclusive_and_configurable(self) -> None:
        check_segment_length(custom("\n", 50))
        check_segment_length(custom("\n", 4000))
        with pytest.raises(ProcessRuleError, match=r"^Custom segment length should be between 50 and 1000\.$"):
            check_segment_length(custom("\n", 1001), 1000)
        with pytest.raises(ProcessRuleError, match="between 50 and 1000"):
            split_text("x", custom("\n", 1001), max_segmentation_tokens=1000)

    def test_overlap_larger_than_size(self) -> None:
        # Dify: test_chunk_overlap_validation
        with pytest.raises(ProcessRuleError) as e:
            check_segment_length(custom("\n", 100, 150))
        assert str(e.value) == "Got a larger chunk overlap (150) than chunk size (100), should be smaller."
        check_segment_length(custom("\n", 100, 100))  # equal is allowed

    def test_subchunks_are_checked_after_parents(self) -> None:
        rule = hierarchical("paragraph", {"separator": "\n", "max_tokens": 10}, seg={"max_tokens": 20})
        with pytest.raises(ProcessRuleError, match="between 50 and 4000"):
            check_segment_length(rule)
        check_segment_length(hierarchical("paragraph", None))  # missing subchunks: reported by the split
        check_segment_length(AUTOMATIC_RULE)


# --------------------------------------------------------------------------------------------------
# Cleaning (Dify: test_clean_processor.py)

NONE = with_steps()
EXTRA = with_steps(("remove_extra_spaces", True))
URLS = with_steps(("remove_urls_emails", True))
BOTH = with_steps(("remove_extra_spaces", True), ("remove_urls_emails", True))


class TestClean:
    def test_default_removal_of_invalid_symbols(self) -> None:
        assert clean_text("text<|with<|invalid", NONE) == "text<with<invalid"
        assert clean_text("text|>with|>invalid", NONE) == "text>with>invalid"
        assert clean_text("normal\x00text\x1fwith\x07control\x7fchars", NONE) == "normaltextwithcontrolchars"
        assert clean_text("normal\ufffepadding", NONE) == "normalpadding"
        assert clean_text("<|<|\x00\x01\x02\ufffe|>|>", NONE) == "<<>>"
        assert clean_text("tab\tnew\nline\rcr", NONE) == "tab\tnew\nline\rcr"

    def test_preserves_valid_extended_characters(self) -> None:
        for text in ("naïve", "¿Cómo estás?", "¾ cup sugar", "ï¿¾"):
            assert clean_text(text, NONE) == text
        assert clean_text("keep\ufffedrop", NONE) == "keepdrop"

    def test_remove_extra_spaces(self) -> None:
        assert clean_text("Line1\n\n\n\n\nLine2", EXTRA) == "Line1\n\nLine2"
        assert clean_text("word1\u2000\u2001\t\t  \u3000word2", EXTRA) == "word1 word2"
        assert clean_text("Line1\n\n\n\n  \t  Line2", EXTRA) == "Line1\n\n Line2"
        assert clean_text("one space stays, \n\n two newlines stay", EXTRA) == "one space stays, \n\n two newlines stay"
        disabled = with_steps(("remove_extra_spaces", False))
        assert clean_text("Line1\n\n\n\n\nLine2  with  spaces", disabled) == "Line1\n\n\n\n\nLine2  with  spaces"

    def test_remove_urls_emails(self) -> None:
        assert clean_text("Contact us at test@example.com for more info", URLS) == "Contact us at  for more info"
        assert clean_text("Visit https://example.com or http://test.org", URLS) == "Visit  or "
        assert clean_text("Email me@test.com and visit https://site.com", URLS) == "Email  and visit "
        assert clean_text("https://text-url.com https://actual-url.com", URLS) == " "
        text = "Email test@example.com visit https://example.com"
        assert clean_text(text, with_steps(("remove_urls_emails", False))) == text

    def test_markdown_links_and_images_preserved(self) -> None:
        for text in (
            "Check [Google](https://google.com) for info",
            "Image: ![alt](https://example.com/image.png)",
            "[Link](https://link.com) and ![Image](https://image.com/img.jpg)",
            "[One](https://one.com) [Two](http://two.org) [Three](https://three.net)",
            "[https://text-url.com](https://actual-url.com)",
            "[Text with (parens) and symbols](https://example.com)",
        ):
            assert clean_text(text, URLS) == text
        text = "Check [Link](https://keep.com) but remove https://remove.com"
        assert clean_text(text, URLS) == "Check [Link](https://keep.com) but remove "
        text = "Email: test@test.com, link: [Click](https://site.com)"
        assert clean_text(text, URLS) == "Email: , link: [Click](https://site.com)"
        text = "Email test@example.com and remove https://remove.com but keep ![diagram](https://example.com/image.png)"
        assert clean_text(text, URLS) == "Email  and remove  but keep ![diagram](https://example.com/image.png)"

    def test_markdown_known_limitations(self) -> None:
        # A "]" in the link text defeats the link pattern; the URL (with its ")") goes.
        text = "[Text with [brackets] and (parens)](https://example.com)"
        assert clean_text(text, URLS) == "[Text with [brackets] and (parens)]("
        # An image whose alt text has a "]" is caught by the image pattern, which rewrites the alt text.
        assert clean_text("![a]b](https://e.com/i.png) x", URLS) == "![image](https://e.com/i.png) x"

    def test_both_rules(self) -> None:
        text = "Hello\n\n\n\n  World  test@example.com  \n\n\nhttps://example.com"
        assert clean_text(text, BOTH) == "Hello\n\n World  \n\n"
        text = "[Link](https://example.com)\n\n\n\n  Text  https://remove.com"
        assert clean_text(text, BOTH) == "[Link](https://example.com)\n\n Text "

    def test_rules_apply_in_the_given_order(self) -> None:
        text = "a https://x.com  b"
        assert clean_text(text, BOTH) == "a  b"  # spaces first, then the URL leaves two
        assert clean_text(text, with_steps(("remove_urls_emails", True), ("remove_extra_spaces", True))) == "a b"

    def test_unknown_rules_and_empty_text(self) -> None:
        assert clean_text("Hello<|World\x00", with_steps(("unknown_rule", True))) == "Hello<World"
        assert clean_text("a  b", with_steps(("remove_stopwords", True))) == "a  b"
        assert clean_text("", BOTH) == ""

    def test_automatic_rule_removes_extra_spaces_only(self) -> None:
        assert clean_text("a   b\n\n\n\nc https://x.com", AUTOMATIC_RULE) == "a b\n\nc https://x.com"


# --------------------------------------------------------------------------------------------------
# Helpers


class TestHelpers:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            # Dify: test_text_processing.py
            ("...Hello, World!", "Hello, World!"),
            ("。测试中文标点", "测试中文标点"),
            ("@#Test symbols", "Test symbols"),
            ("!Test symbols", "!Test symbols"),
            ("Hello, World!", "Hello, World!"),
            ("", ""),
            ("   ", "   "),
            ("【测试】", "【测试】"),
            ("[Google](https://google.com) is a search engine", "[Google](https://google.com) is a search engine"),
            ("[Example](http://example.com) some text", "[Example](http://example.com) some text"),
            ("@[Test](https://example.com)", "Test](https://example.com)"),
            ("[not a link] text", "not a link] text"),
            ("…ellipsis", "…ellipsis"),
        ],
    )
    def test_remove_leading_symbols(self, text: str, expected: str) -> None:
        assert remove_leading_symbols(text) == expected

    def test_text_hash(self) -> None:
        # sha256 of the text + "None"
        assert text_hash("hello") == "c0a2ae6e305366764fa6ba9ff8811afa22429dff0be3e5ad30e2ee9e738efcee"
        assert text_hash("") == "dc937b59892604f5a86ac96936cd7ff09e25f18ae6b758e8014a24c7fa039e91"

    def test_split_text_with_regex(self) -> None:
        # Dify: TestSplitTextWithRegex (keep_separator=True, as the splitters use it)
        assert _split_text_with_regex("Hello\nWorld\nTest", "\n") == ["Hello\n", "World\n", "Test"]
        assert _split_text_with_regex("ABC", "") == ["A", "B", "C"]
        assert _split_text_with_regex("Hello\n\nWorld", "\n") == ["Hello\n", "World"]
        assert _split_text_with_regex("a.b.c", ".") == ["a.", "b.", "c"]

    def test_merge_splits_with_overlap(self) -> None:
        splits = ["aaaa ", "bbbb ", "cccc ", "dddd ", "eeee"]
        assert _merge_splits(splits, 10, 5) == ["aaaa bbbb", "bbbb cccc", "cccc dddd", "dddd eeee"]
        assert _merge_splits(splits, 10, 0) == ["aaaa bbbb", "cccc dddd", "eeee"]
        assert _merge_splits(["  ", " "], 10, 0) == []  # blank docs are dropped


# --------------------------------------------------------------------------------------------------
# Splitters, by hand


class TestRecursiveSplitter:
    def test_space_split_with_overlap(self) -> None:
        # ". " is picked by re.search (any char + space) but splits nothing, so " " does the work.
        assert _recursive_split("a b c d e f", SEPARATORS, 5, 2) == ["a b", "b c", "c d", "d e f"]

    def test_dify_edge_cases(self) -> None:
        # Dify: test_chunk_size_equals_text_length, test_single_word, test_empty_text, test_single_character_text
        assert _recursive_split("Exact size text", SEPARATORS, 15, 0) == ["Exact size text"]
        assert _recursive_split("Hello", SEPARATORS, 100, 10) == ["Hello"]
        assert _recursive_split("", SEPARATORS, 100, 10) == []
        assert _recursive_split("A", SEPARATORS, 10, 2) == ["A"]
        assert _recursive_split("\n\n\n\n", SEPARATORS, 10, 2) == []

    def test_character_level_merge(self) -> None:
        assert _recursive_split("abcdefghij", ("",), 4, 2) == ["abcd", "cdef", "efgh", "ghij"]


class TestFixedRecursiveSplitter:
    def test_space_split_keeps_spaces(self) -> None:
        # PR #39498: words are no longer glued together ("aaaabbbb") and runs of spaces become one.
        assert _fixed_recursive_split("aaaa bbbb cccc dddd eeee", 10, 5) == [
            "aaaa bbbb",
            "bbbb cccc",
            "cccc dddd",
            "dddd eeee",
        ]
        assert _fixed_recursive_split("word1  word2   word3    word4", 15, 3) == ["word1 word2", "word3 word4"]

    def test_character_walk_has_its_own_overlap(self) -> None:
        assert _fixed_recursive_split("abcdefghij", 4, 2) == ["abcd", "cdef", "fghi", "hij"]
        assert _fixed_recursive_split("abcdefghij", 4, 0) == ["abcd", "efgh", "ij"]

    def test_sentence_separators_are_kept(self) -> None:
        assert _fixed_recursive_split("一二。三四。五六。", 5, 0) == ["一二。", "三四。", "五六。"]
        assert _fixed_recursive_split("Aa bb. Cc dd. Ee", 8, 0) == ["Aa bb.", "Cc dd.", "Ee"]

    def test_oversized_split_falls_to_the_regex_splitter(self) -> None:
        assert _fixed_recursive_split("x\n\nabcdefgh", 4, 0) == ["x", "abcd", "efgh"]


def long_words(n: int) -> str:
    return " ".join(f"word{i:03d}" for i in range(n))


class TestSplitText:
    def test_fixed_pieces_are_not_merged(self) -> None:
        rule = custom("\\n", 50)
        chunks = split_text("a\nb\n\nc", rule)
        assert contents(chunks) == ["a", "b", "c"]
        assert [c.hash for c in chunks] == [text_hash("a"), text_hash("b"), text_hash("c")]
        # Dify: test_split_by_fixed_separator
        assert contents(split_text("Part 1\n\nPart 2\n\nPart 3", custom("\n\n", 100))) == ["Part 1", "Part 2", "Part 3"]

    def test_oversized_piece_split_with_overlap(self) -> None:
        text = long_words(12)  # 95 characters, no newline
        chunks = contents(split_text(text, custom("\\n", 50, 20)))
        assert chunks == [
            "word000 word001 word002 word003 word004 word005",
            "word004 word005 word006 word007 word008 word009",
            "word008 word009 word010 word011",
        ]

    def test_separator_escapes(self) -> None:
        # Dify: test_double_slash_n and the invisible-delimiter escapes
        assert contents(split_text("a\n\n---\n\nb", custom("\\n\\n---\\n\\n", 100))) == ["a", "b"]
        assert contents(split_text("chunk1\tchunk2\tchunk3", custom("\\t", 100))) == ["chunk1", "chunk2", "chunk3"]
        zwsp = "\u200b"
        text = f"chunk1{zwsp}chunk2{zwsp}chunk3"
        assert contents(split_text(text, custom("\\u200b", 100))) == ["chunk1", "chunk2", "chunk3"]
        assert contents(split_text("chunk1\nchunk2\nchunk3", custom("\n", 100))) == ["chunk1", "chunk2", "chunk3"]

    def test_non_ascii_separators_are_mangled_as_in_dify(self) -> None:
        # unicode_escape decoding turns U+200B into "\xe2\x80\x8b" (issue #31672): no split at all.
        text = "chunk1\u200bchunk2\u200bchunk3"
        assert contents(split_text(text, custom("\u200b", 100))) == [text]
        assert contents(split_text("一。二。三", custom("。", 50))) == ["一。二。三"]
        assert contents(split_text("chunk1，chunk2", custom("，", 50))) == ["chunk1，chunk2"]

    def test_bad_escape_fails_like_the_task(self) -> None:
        with pytest.raises(ProcessRuleError, match=r"^'unicodeescape' codec can't decode byte 0x5c in position 2"):
            split_text("text", custom("ab\\", 100))
        assert contents(split_text("a\\qb", custom("\\q", 100))) == ["a", "b"]  # unknown escapes are kept

    def test_leading_symbols_removed_hash_before(self) -> None:
        chunks = split_text("...first\n- second\n!third", custom("\n", 50))
        assert contents(chunks) == ["first", "- second", "!third"]
        assert chunks[0].hash == text_hash("...first")

    def test_blank_chunks_dropped(self) -> None:
        assert contents(split_text("a\n \n...\n\nb", custom("\n", 50))) == ["a", "b"]
        assert split_text("", custom("\n", 50)) == []
        assert split_text("", AUTOMATIC_RULE) == []
        assert split_text(" \n\n \n", AUTOMATIC_RULE) == []

    def test_cleaning_happens_before_splitting(self) -> None:
        rule = custom("\n", 50, pre=[{"id": "remove_extra_spaces", "enabled": True}])
        assert contents(split_text("a   b\n\n\n\nc", rule)) == ["a b", "c"]
        rule = custom("\n", 50, pre=[{"id": "remove_urls_emails", "enabled": True}])
        assert contents(split_text("see ![x](https://e.com/i.png) and https://y.com\nnext", rule)) == [
            "see ![x](https://e.com/i.png) and",
            "next",
        ]

    def test_automatic_merges_small_pieces(self) -> None:
        assert contents(split_text("a\n\n\n\nb\nc", AUTOMATIC_RULE)) == ["a\n\nb\nc"]

    def test_automatic_defaults_500_50(self) -> None:
        text = "这是一个很长的句子。" * 100  # 100 sentences of 10 characters
        chunks = contents(split_text(text, AUTOMATIC_RULE))
        assert chunks == [text[:500], text[450:950], text[900:]]

    def test_chinese_custom_recursion_on_full_stop(self) -> None:
        text = "这是第一句。这是第二句。" * 6  # 72 characters
        chunks = contents(split_text(text, custom("###", 50)))
        assert chunks == [text[:48], text[48:]]


# --------------------------------------------------------------------------------------------------
# Hierarchical


class TestSplitHierarchical:
    def test_paragraph_mode(self) -> None:
        rule = hierarchical("paragraph", {"separator": "\\n", "max_tokens": 50})
        parents = split_hierarchical("Para one line1.\nline2\n\n.Para two\n。child", rule)
        assert parents == [
            ParentChunk(
                "Para one line1.\nline2",
                text_hash("Para one line1.\nline2"),
                (SplitChunk("Para one line1.", text_hash("Para one line1.")), SplitChunk("line2", text_hash("line2"))),
            ),
            ParentChunk(
                "Para two\n。child",
                text_hash(".Para two\n。child"),  # hashed before the leading "." goes
                (SplitChunk("Para two", text_hash("Para two")), SplitChunk("child", text_hash("。child"))),
            ),
        ]

    def test_paragraph_mode_cleans_and_keeps_other_symbols(self) -> None:
        rule = hierarchical(
            "paragraph", {"separator": "\\n", "max_tokens": 50}, pre=[{"id": "remove_extra_spaces", "enabled": True}]
        )
        parents = split_hierarchical("- a   b\n- c\n\n\n\n\n\n- d", rule)
        assert [p.content for p in parents] == ["- a b\n- c", "- d"]
        assert [c.content for c in parents[0].children] == ["- a b", "- c"]

    def test_full_doc_is_neither_cleaned_nor_truncated(self) -> None:
        rule = hierarchical(
            "full-doc", {"separator": "\\n", "max_tokens": 50}, pre=[{"id": "remove_extra_spaces", "enabled": True}]
        )
        text = "  raw   text\n\n\n\n.more  \n" + "x" * 20000
        [parent] = split_hierarchical(text, rule)
        assert parent.content == text
        assert parent.hash == text_hash(text)
        children = [c.content for c in parent.children]
        assert children[:2] == ["  raw   text", "more"]
        assert len(children) == 2 + 400 and all(c == "x" * 50 for c in children[2:])

    def test_full_doc_empty_text_still_has_a_parent(self) -> None:
        rule = hierarchical("full-doc", {"separator": "\\n", "max_tokens": 50})
        assert split_hierarchical("", rule) == [ParentChunk("", text_hash(""), ())]

    def test_missing_subchunk_segmentation(self) -> None:
        paragraph = hierarchical("paragraph", None)
        with pytest.raises(ProcessRuleError, match=r"^No subchunk segmentation found in rules\.$"):
            split_hierarchical("text", paragraph)
        assert split_hierarchical("", paragraph) == []  # no parent asks for children
        with pytest.raises(ProcessRuleError, match=r"^No subchunk segmentation found in rules\.$"):
            split_hierarchical("", hierarchical("full-doc", None))

    def test_child_length_is_checked(self) -> None:
        rule = hierarchical("paragraph", {"separator": "\\n", "max_tokens": 10})
        with pytest.raises(ProcessRuleError, match="between 50 and 4000"):
            split_hierarchical("text", rule)
        assert split_hierarchical("", rule) == []

    def test_no_parent_mode_gives_nothing(self) -> None:
        assert split_hierarchical("some text", custom("\n", 50)) == []
        assert split_hierarchical("some text", AUTOMATIC_RULE) == []

    def test_children_overlap(self) -> None:
        rule = hierarchical("paragraph", {"separator": "\\n", "max_tokens": 50, "chunk_overlap": 20})
        [parent] = split_hierarchical(long_words(12), rule)
        assert [c.content for c in parent.children] == [
            "word000 word001 word002 word003 word004 word005",
            "word004 word005 word006 word007 word008 word009",
            "word008 word009 word010 word011",
        ]


# --------------------------------------------------------------------------------------------------
# Properties

_SYMBOLS = re.compile(
    r"[\s\[\]\u2000-\u2025\u2027-\u206F\u2E00-\u2E7F\u3000-\u300F\u3011-\u303F\"#$%&'()*+,./:;<=>?@^_`~]"
)


def key(text: str) -> str:
    """The characters no step may lose: all but whitespace and the symbols leading-symbol removal may drop."""
    return _SYMBOLS.sub("", text)


def assert_covers(whole: str, parts: list[str]) -> None:
    """``parts`` cover ``whole``'s key characters in order: each part starts at or before the end of the previous
    one and ends at or after it (overlap, no gap). Repetitive texts match in several places: all are tracked."""
    target = key(whole)
    ends = {0}
    for part in parts:
        k = key(part)
        if not k:
            continue
        ends = {s + len(k) for p in ends for s in range(max(0, p - len(k)), p + 1) if target.startswith(k, s)}
        assert ends, f"{part!r} does not continue the previous parts in {target!r}"
    assert len(target) in ends


_PIECES = [
    "alpha",
    "beta",
    "gamma",
    "δέλτα",
    "中文",
    "句子",
    "x" * 70,
    "y" * 13,
    " ",
    "  ",
    "\n",
    "\n\n",
    "。",
    ". ",
    ", ",
]


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, 400)))


def random_rule(rng: random.Random) -> ProcessRule:
    if rng.random() < 0.25:
        return AUTOMATIC_RULE
    size = rng.randrange(50, 130)
    separator = rng.choice(["\\n", "\\n\\n", "\n", "###", " ", "。"])
    pre = [{"id": "remove_extra_spaces", "enabled": rng.random() < 0.5}]
    return custom(separator, size, rng.randrange(0, size), pre)


@pytest.mark.parametrize("seed", range(40))
def test_split_text_properties(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(10):
        text, rule = random_text(rng), random_rule(rng)
        chunks = split_text(text, rule)
        size = rule.segmentation.max_tokens
        assert all(0 < len(c.content) <= size for c in chunks)
        assert all(c.content == c.content.strip() for c in chunks)
        assert_covers(clean_text(text, rule), contents(chunks))


@pytest.mark.parametrize("seed", range(20))
def test_split_hierarchical_properties(seed: int) -> None:
    rng = random.Random(1000 + seed)
    for _ in range(5):
        text = random_text(rng)
        size, sub = rng.randrange(200, 400), rng.randrange(50, 100)
        parent_mode = rng.choice(["paragraph", "full-doc"])
        rule = hierarchical(
            parent_mode,
            {"separator": rng.choice(["\\n", " ", "。"]), "max_tokens": sub, "chunk_overlap": rng.randrange(0, 30)},
            seg={"separator": rng.choice(["\\n\\n", "\\n"]), "max_tokens": size, "chunk_overlap": 0},
            pre=[{"id": "remove_extra_spaces", "enabled": True}],
        )
        parents = split_hierarchical(text, rule)
        whole = clean_text(text, rule) if parent_mode == "paragraph" else text
        assert_covers(whole, [p.content for p in parents])
        for parent in parents:
            if parent_mode == "paragraph":
                assert 0 < len(parent.content) <= size
            assert all(0 < len(c.content) <= sub for c in parent.children)
            assert_covers(parent.content, [c.content for c in parent.children])
