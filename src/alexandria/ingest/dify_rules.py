"""Dify's document processing rules, reproduced: process-rule validation, cleaning and splitting.

A pure module (no I/O, no state). Lengths are characters, as in Dify: ``EnhanceRecursiveCharacterTextSplitter
.from_encoder`` wires ``length_function = [len(t) for t in texts]``. Sources (``langgenius/dify``, ``api/``):

* validation: ``services/dataset_service.py`` ``DocumentService.process_rule_args_validate``, after the request's
  pydantic models (``services/entities/knowledge_entities/knowledge_entities.py``), mirrored by :class:`DifyPayload`;
* automatic rules: ``models/dataset.py`` ``DatasetProcessRule.AUTOMATIC_RULES``;
* the 50..N bound and the splitters: ``core/rag/index_processor/index_processor_base.py`` ``_get_splitter``,
  ``core/rag/splitter/fixed_text_splitter.py`` and ``core/rag/splitter/text_splitter.py`` (with the fix of
  PR #39498, merged July 2026: a space split keeps its space, so words are not glued together);
* cleaning: ``core/rag/cleaner/clean_processor.py`` (current: markdown links and images survive URL removal, and
  ``ï ¿ ¾`` are no longer stripped);
* chunk post-processing: ``core/rag/index_processor/processor/paragraph_index_processor.py`` and
  ``parent_child_index_processor.py``; ``core/tools/utils/text_processing_utils.py`` ``remove_leading_symbols``
  (current: a leading markdown link is kept; ``…`` and ``【`` are not symbols); ``libs/helper.py``
  ``generate_text_hash``.

Quirks kept on purpose: a custom separator's pieces are never merged; ``"\\n"`` in a separator becomes a newline
and the result is then decoded with ``codecs`` ``unicode_escape``, which mangles any non-ASCII separator (``。``,
``，``, U+200B...) so that it never matches (Dify issue #31672, still open); a chunk's hash is taken before its
leading symbols are removed; full-doc parents are neither cleaned nor truncated (the "first 10,000 tokens" of
Dify's docs is not in the code); a hierarchical rule without ``parent_mode`` yields no parent at all.
"""

from __future__ import annotations

import codecs
import copy
import hashlib
import re
import warnings
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ValidationError

__all__ = [
    "AUTOMATIC_RULE",
    "AUTOMATIC_RULES",
    "DifyPayload",
    "ParentChunk",
    "ProcessRule",
    "ProcessRuleError",
    "Segmentation",
    "SplitChunk",
    "check_segment_length",
    "clean_text",
    "parse_process_rule",
    "remove_leading_symbols",
    "split_hierarchical",
    "split_text",
    "text_hash",
]

Mode = Literal["automatic", "custom", "hierarchical"]
ParentMode = Literal["paragraph", "full-doc"]

AUTOMATIC_RULES: dict[str, object] = {
    "pre_processing_rules": [
        {"id": "remove_extra_spaces", "enabled": True},
        {"id": "remove_urls_emails", "enabled": False},
    ],
    "segmentation": {"delimiter": "\n", "max_tokens": 500, "chunk_overlap": 50},
}
"""``DatasetProcessRule.AUTOMATIC_RULES``, as Dify stores and returns it (note ``delimiter``, not ``separator``)."""

_AUTOMATIC_MAX_TOKENS = 500
_AUTOMATIC_CHUNK_OVERLAP = 50
_RECURSIVE_SEPARATORS = ("\n\n", "。", ". ", " ", "")
"""The separators ``_get_splitter`` gives both splitters (the fixed splitter's own default has ``"\\n"`` too)."""
_DEFAULT_MAX_SEGMENTATION_TOKENS = 4000
"""``INDEXING_MAX_SEGMENTATION_TOKENS_LENGTH``'s default in current Dify (older releases: 1000)."""


class ProcessRuleError(ValueError):
    """A process rule Dify rejects; the message is Dify's own (a pydantic report for ill-typed JSON)."""


class DifyPayload:
    """Dify's pydantic request models for ``process_rule``, with Dify's class names (they appear in pydantic's
    messages). An API payload model can use ``DifyPayload.ProcessRule`` as a field type so that type errors read
    exactly as Dify's ("1 validation error for DocumentTextCreatePayload\\nprocess_rule.mode\\n  ...")."""

    class PreProcessingRule(BaseModel):
        id: str
        enabled: bool

    class Segmentation(BaseModel):
        separator: str = "\n"
        max_tokens: int
        chunk_overlap: int = 0

    class Rule(BaseModel):
        pre_processing_rules: list[DifyPayload.PreProcessingRule] | None = None
        segmentation: DifyPayload.Segmentation | None = None
        parent_mode: Literal["full-doc", "paragraph"] | None = None
        subchunk_segmentation: DifyPayload.Segmentation | None = None

    class ProcessRule(BaseModel):
        mode: Literal["automatic", "custom", "hierarchical"]
        rules: DifyPayload.Rule | None = None


DifyPayload.Rule.model_rebuild()
DifyPayload.ProcessRule.model_rebuild()


@dataclass(frozen=True)
class Segmentation:
    separator: str
    """As given in the request (``"\\\\n"`` stays escaped); decoded only when splitting."""
    max_tokens: int
    chunk_overlap: int

    def to_json(self) -> dict[str, object]:
        return {"separator": self.separator, "max_tokens": self.max_tokens, "chunk_overlap": self.chunk_overlap}


@dataclass(frozen=True)
class ProcessRule:
    mode: Mode
    remove_extra_spaces: bool
    remove_urls_emails: bool
    segmentation: Segmentation
    parent_mode: ParentMode | None
    """Used in hierarchical mode only (kept as given otherwise, since Dify stores it)."""
    subchunk_segmentation: Segmentation | None
    """Used in hierarchical mode only (kept as given otherwise, since Dify stores it)."""
    pre_processing_rules: tuple[tuple[str, bool], ...] | None = None
    """The request's ``(id, enabled)`` list after Dify's de-duplication, unknown ids included: cleaning applies the
    rules in this order and :meth:`to_json` returns it. ``None``: the two flags above, in Dify's usual order."""

    def __post_init__(self) -> None:
        if self.pre_processing_rules is not None:
            on = {rule_id for rule_id, enabled in self.pre_processing_rules if enabled}
            if ("remove_extra_spaces" in on, "remove_urls_emails" in on) != (
                self.remove_extra_spaces,
                self.remove_urls_emails,
            ):
                raise ValueError("pre_processing_rules disagree with remove_extra_spaces / remove_urls_emails")

    @property
    def cleaning_steps(self) -> tuple[tuple[str, bool], ...]:
        if self.pre_processing_rules is not None:
            return self.pre_processing_rules
        return (("remove_extra_spaces", self.remove_extra_spaces), ("remove_urls_emails", self.remove_urls_emails))

    def to_json(self) -> dict[str, object]:
        """``{"mode", "rules"}`` as Dify stores it: ``AUTOMATIC_RULES`` for automatic, else ``Rule.model_dump``."""
        if self.mode == "automatic":
            return {"mode": "automatic", "rules": copy.deepcopy(AUTOMATIC_RULES)}
        rules: dict[str, object] = {
            "pre_processing_rules": [{"id": i, "enabled": e} for i, e in self.cleaning_steps],
            "segmentation": self.segmentation.to_json(),
            "parent_mode": self.parent_mode,
            "subchunk_segmentation": self.subchunk_segmentation.to_json() if self.subchunk_segmentation else None,
        }
        return {"mode": self.mode, "rules": rules}


AUTOMATIC_RULE = ProcessRule(
    mode="automatic",
    remove_extra_spaces=True,
    remove_urls_emails=False,
    segmentation=Segmentation("\n", _AUTOMATIC_MAX_TOKENS, _AUTOMATIC_CHUNK_OVERLAP),
    parent_mode=None,
    subchunk_segmentation=None,
)


@dataclass(frozen=True)
class SplitChunk:
    content: str
    hash: str
    """Dify's ``index_node_hash``: :func:`text_hash` of the splitter's output, before leading symbols go."""


@dataclass(frozen=True)
class ParentChunk:
    content: str
    hash: str
    children: tuple[SplitChunk, ...]


# --------------------------------------------------------------------------------------------------
# Validation


def parse_process_rule(obj: object, *, max_segmentation_tokens: int = _DEFAULT_MAX_SEGMENTATION_TOKENS) -> ProcessRule:
    """Validate a request's ``process_rule`` as Dify does at request time: its pydantic models first (every type
    error at once, pydantic's message), then ``process_rule_args_validate``'s checks in order. ``None``: automatic.

    ``max_segmentation_tokens`` is not checked here: Dify checks the 50..N bound only in the indexing task (the
    document ends in error, the request succeeds). Call :func:`check_segment_length` for it.
    """
    del max_segmentation_tokens  # see the docstring: Dify does not check the bound at request time
    if obj is None:
        return AUTOMATIC_RULE
    try:
        model = obj if isinstance(obj, DifyPayload.ProcessRule) else DifyPayload.ProcessRule.model_validate(obj)
    except ValidationError as e:
        raise ProcessRuleError(str(e)) from e
    if model.mode == "automatic":  # Dify discards the rules
        return AUTOMATIC_RULE
    rules = model.rules
    if rules is None:  # a Rule model is always truthy: only a missing/null `rules` fails `if not rules`
        raise ProcessRuleError("Process rule rules is required")
    if rules.pre_processing_rules is None:
        raise ProcessRuleError("Process rule pre_processing_rules is required")
    unique: dict[str, bool] = {}
    for pre in rules.pre_processing_rules:
        if not pre.id:
            raise ProcessRuleError("Process rule pre_processing_rules id is required")
        unique[pre.id] = pre.enabled  # last wins, at the first occurrence's place
    parent_mode = rules.parent_mode
    if model.mode == "hierarchical" and not parent_mode:
        parent_mode = "paragraph"
    seg = rules.segmentation
    if seg is None:
        raise ProcessRuleError("Process rule segmentation is required")
    if not seg.separator:
        raise ProcessRuleError("Process rule segmentation separator is required")
    if not (model.mode == "hierarchical" and parent_mode == "full-doc") and not seg.max_tokens:
        raise ProcessRuleError("Process rule segmentation max_tokens is required")
    sub = rules.subchunk_segmentation
    return ProcessRule(
        mode=model.mode,
        remove_extra_spaces=unique.get("remove_extra_spaces") is True,
        remove_urls_emails=unique.get("remove_urls_emails") is True,
        segmentation=Segmentation(seg.separator, seg.max_tokens, seg.chunk_overlap),
        parent_mode=parent_mode,
        subchunk_segmentation=Segmentation(sub.separator, sub.max_tokens, sub.chunk_overlap) if sub else None,
        pre_processing_rules=tuple(unique.items()),
    )


def _check_splitter(seg: Segmentation, max_segmentation_tokens: int) -> None:
    """``_get_splitter`` for a custom/hierarchical rule: the bound, then the splitter's own overlap check."""
    if seg.max_tokens < 50 or seg.max_tokens > max_segmentation_tokens:
        raise ProcessRuleError(f"Custom segment length should be between 50 and {max_segmentation_tokens}.")
    if seg.chunk_overlap > seg.max_tokens:
        raise ProcessRuleError(
            f"Got a larger chunk overlap ({seg.chunk_overlap}) than chunk size ({seg.max_tokens}), should be smaller."
        )


def check_segment_length(rule: ProcessRule, max_segmentation_tokens: int = _DEFAULT_MAX_SEGMENTATION_TOKENS) -> None:
    """The checks Dify's indexing task makes when it builds its splitters, in its order: for a custom or
    hierarchical rule, ``max_tokens`` in 50..N ("Custom segment length should be between 50 and N.") and
    ``chunk_overlap <= max_tokens``, first for ``segmentation`` (unless the parents are full documents), then for
    ``subchunk_segmentation`` (hierarchical, when present). Automatic rules always pass (500/50 are fixed)."""
    if rule.mode == "automatic":
        return
    if not (rule.mode == "hierarchical" and rule.parent_mode == "full-doc"):
        _check_splitter(rule.segmentation, max_segmentation_tokens)
    if rule.mode == "hierarchical" and rule.subchunk_segmentation is not None:
        _check_splitter(rule.subchunk_segmentation, max_segmentation_tokens)


# --------------------------------------------------------------------------------------------------
# Cleaning and small helpers

_INVALID_SYMBOLS = re.compile(r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]")
_EXTRA_NEWLINES = re.compile(r"\n{3,}")
_EXTRA_SPACES = re.compile(r"[\t\f\r\x20\u00a0\u1680\u180e\u2000-\u200a\u202f\u205f\u3000]{2,}")
_EMAIL = re.compile(r"([a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+)")
_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\((https?://[^)]+)\)")
_MARKDOWN_IMAGE = re.compile(r"!\[.*?\]\((https?://[^)]+)\)")
_URL = re.compile(r"https?://\S+")
_LEADING_MARKDOWN_LINK = re.compile(r"^\[([^\]]+)\]\((https?://[^)]+)\)")
_LEADING_SYMBOLS = re.compile(
    r"^[\[\]\u2000-\u2025\u2027-\u206F\u2E00-\u2E7F\u3000-\u300F\u3011-\u303F\"#$%&'()*+,./:;<=>?@^_`~]+"
)


def _remove_urls_emails(text: str) -> str:
    text = _EMAIL.sub("", text)
    kept: list[str] = []  # markdown links, then images, are swapped for placeholders while URLs go

    def keep(rendered: str) -> str:
        kept.append(rendered)
        return f"__MARKDOWN_PLACEHOLDER_{len(kept) - 1}__"

    text = _MARKDOWN_LINK.sub(lambda m: keep(f"[{m.group(1)}]({m.group(2)})"), text)
    text = _MARKDOWN_IMAGE.sub(lambda m: keep(f"![image]({m.group(1)})"), text)
    text = _URL.sub("", text)
    for i, rendered in enumerate(kept):
        text = text.replace(f"__MARKDOWN_PLACEHOLDER_{i}__", rendered)
    return text


def clean_text(text: str, rule: ProcessRule) -> str:
    """``CleanProcessor.clean``: always ``<|``→``<``, ``|>``→``>``, control characters and U+FFFE removed; then
    each enabled pre-processing rule, in the rule's order (``remove_stopwords`` and unknown ids do nothing)."""
    text = text.replace("<|", "<").replace("|>", ">")
    text = _INVALID_SYMBOLS.sub("", text).replace("\ufffe", "")
    for rule_id, enabled in rule.cleaning_steps:
        if rule_id == "remove_extra_spaces" and enabled:
            text = _EXTRA_SPACES.sub(" ", _EXTRA_NEWLINES.sub("\n\n", text))
        elif rule_id == "remove_urls_emails" and enabled:
            text = _remove_urls_emails(text)
    return text


def remove_leading_symbols(text: str) -> str:
    """Dify's ``remove_leading_symbols``: leading punctuation goes, unless the text starts with a markdown link."""
    if _LEADING_MARKDOWN_LINK.match(text):
        return text
    return _LEADING_SYMBOLS.sub("", text)


def text_hash(text: str) -> str:
    """``helper.generate_text_hash``: sha256 hex of the text followed by ``"None"``."""
    return hashlib.sha256((text + "None").encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# Splitters (ports of Dify's; keep_separator is always True there)


def _join_docs(docs: list[str]) -> str | None:
    text = "".join(docs).strip()
    return text or None


def _merge_splits(splits: list[str], chunk_size: int, chunk_overlap: int) -> list[str]:
    """``TextSplitter._merge_splits`` with the empty separator (separators are kept inside the splits)."""
    docs: list[str] = []
    current: list[str] = []
    total = 0
    for d in splits:
        if total + len(d) > chunk_size and current:
            doc = _join_docs(current)
            if doc is not None:
                docs.append(doc)
            while total > chunk_overlap or (total + len(d) > chunk_size and total > 0):
                total -= len(current[0])  # IndexError for a negative overlap, as in Dify
                current = current[1:]
        current.append(d)
        total += len(d)
    doc = _join_docs(current)
    if doc is not None:
        docs.append(doc)
    return docs


def _split_text_with_regex(text: str, separator: str) -> list[str]:
    if separator:
        parts = re.split(f"({re.escape(separator)})", text)
        splits = [parts[i - 1] + parts[i] for i in range(1, len(parts), 2)]
        if len(parts) % 2 != 0:
            splits += parts[-1:]
    else:
        splits = list(text)
    return [s for s in splits if s not in {"", "\n"}]


def _recursive_split(text: str, separators: tuple[str, ...], size: int, overlap: int) -> list[str]:
    """``RecursiveCharacterTextSplitter._split_text``. The separator is chosen with ``re.search`` on the raw
    separator, so ``". "`` matches any character followed by a space (the split itself is literal)."""
    separator = separators[-1]
    rest: tuple[str, ...] = ()
    for i, s in enumerate(separators):
        if s == "":
            separator = s
            break
        if re.search(s, text):
            separator, rest = s, separators[i + 1 :]
            break
    final: list[str] = []
    good: list[str] = []
    for s in _split_text_with_regex(text, separator):
        if len(s) < size:
            good.append(s)
            continue
        if good:
            final.extend(_merge_splits(good, size, overlap))
            good = []
        final.extend(_recursive_split(s, rest, size, overlap) if rest else [s])
    if good:
        final.extend(_merge_splits(good, size, overlap))
    return final


def _fixed_recursive_split(text: str, size: int, overlap: int) -> list[str]:
    """``FixedRecursiveCharacterTextSplitter.recursive_split_text``: separator chosen by plain ``in``; a space
    split collapses runs of spaces to one kept space; the last resort is a character walk with its own overlap."""
    separators = _RECURSIVE_SEPARATORS
    separator = separators[-1]
    rest: tuple[str, ...] = ()
    for i, s in enumerate(separators):
        if s == "":
            separator = s
            break
        if s in text:
            separator, rest = s, separators[i + 1 :]
            break
    if separator:
        splits = re.split(r" +", text) if separator == " " else text.split(separator)
        splits = [s + separator for s in splits[:-1]] + splits[-1:]
    else:
        splits = list(text)
    splits = [s for s in splits if s not in {"", "\n"}]
    final: list[str] = []
    if separator:
        good: list[str] = []
        for s in splits:
            if len(s) < size:
                good.append(s)
                continue
            if good:
                final.extend(_merge_splits(good, size, overlap))
                good = []
            final.extend(_recursive_split(s, rest, size, overlap) if rest else [s])
        if good:
            final.extend(_merge_splits(good, size, overlap))
        return final
    current, overlap_part = "", ""
    for s in splits:
        if len(current) + len(s) <= size - overlap:
            current += s
        elif len(current) + len(s) <= size:
            current += s
            overlap_part += s
        else:
            final.append(current)
            current, overlap_part = overlap_part + s, ""
    if current:
        final.append(current)
    return final


def _decode_separator(separator: str) -> str:
    """``_get_splitter``'s ``replace("\\\\n", "\\n")``, then the fixed splitter's ``unicode_escape`` decoding
    (which encodes as UTF-8 and decodes as Latin-1: non-ASCII separators come out mangled, as in Dify)."""
    separator = separator.replace("\\n", "\n")
    try:
        with warnings.catch_warnings():  # an unknown escape (\q) is kept, with a DeprecationWarning
            warnings.simplefilter("ignore", DeprecationWarning)
            return codecs.decode(separator, "unicode_escape")
    except UnicodeDecodeError as e:  # e.g. a trailing backslash: Dify's task fails with this message
        raise ProcessRuleError(str(e)) from e


def _splitter_chunks(text: str, mode: Mode, seg: Segmentation, max_segmentation_tokens: int) -> list[str]:
    """``_get_splitter(mode, ...)`` then ``split_text``: the fixed splitter for custom/hierarchical rules (its
    pieces kept as they are when short enough), the purely recursive 500/50 splitter for automatic ones."""
    try:
        if mode == "automatic":
            return _recursive_split(text, _RECURSIVE_SEPARATORS, _AUTOMATIC_MAX_TOKENS, _AUTOMATIC_CHUNK_OVERLAP)
        _check_splitter(seg, max_segmentation_tokens)
        fixed = _decode_separator(seg.separator)
        pieces = text.split(fixed) if fixed else [text]
        chunks: list[str] = []
        for piece in pieces:
            if len(piece) > seg.max_tokens:
                chunks.extend(_fixed_recursive_split(piece, seg.max_tokens, seg.chunk_overlap))
            else:
                chunks.append(piece)
        return chunks
    except IndexError as e:  # a negative chunk_overlap breaks Dify's merge the same way
        raise ProcessRuleError(str(e)) from e


# --------------------------------------------------------------------------------------------------
# Index processors


def split_text(
    text: str, rule: ProcessRule, *, max_segmentation_tokens: int = _DEFAULT_MAX_SEGMENTATION_TOKENS
) -> list[SplitChunk]:
    """``ParagraphIndexProcessor.transform`` for one document (text_model, and the chunks QA starts from): the
    splitter is built (bound checks), the text cleaned and split; blank chunks are dropped, the others hashed,
    stripped of leading symbols and whitespace, and dropped if nothing is left."""
    chunks: list[SplitChunk] = []
    for raw in _splitter_chunks(clean_text(text, rule), rule.mode, rule.segmentation, max_segmentation_tokens):
        if not raw.strip():
            continue
        content = remove_leading_symbols(raw).strip()
        if content:
            chunks.append(SplitChunk(content, text_hash(raw)))
    return chunks


def _strip_leading_period(text: str) -> str:
    return text[1:].strip() if text.startswith((".", "。")) else text


def _children(text: str, rule: ProcessRule, max_segmentation_tokens: int) -> tuple[SplitChunk, ...]:
    """``ParentChildIndexProcessor._split_child_nodes``: no cleaning; one leading ``.``/``。`` is stripped."""
    sub = rule.subchunk_segmentation
    if sub is None:
        raise ProcessRuleError("No subchunk segmentation found in rules.")
    children: list[SplitChunk] = []
    for raw in _splitter_chunks(text, rule.mode, sub, max_segmentation_tokens):
        if raw.strip() and (content := _strip_leading_period(raw)):
            children.append(SplitChunk(content, text_hash(raw)))
    return tuple(children)


def split_hierarchical(
    text: str, rule: ProcessRule, *, max_segmentation_tokens: int = _DEFAULT_MAX_SEGMENTATION_TOKENS
) -> list[ParentChunk]:
    """``ParentChildIndexProcessor.transform`` for one document.

    * ``paragraph``: the text is cleaned and split with ``segmentation``; each non-blank parent loses one leading
      ``.``/``。`` (then is stripped; otherwise left as split) and is split with ``subchunk_segmentation``.
    * ``full-doc``: the whole text, **uncleaned and untruncated**, is the one parent (even when empty).
    * no ``parent_mode`` (an automatic or custom rule on a hierarchical document): no parent.

    "No subchunk segmentation found in rules." is raised when the first parent needs children, as in Dify (so a
    paragraph-mode document with no parent does not raise it).
    """
    if rule.parent_mode == "full-doc":
        return [ParentChunk(text, text_hash(text), _children(text, rule, max_segmentation_tokens))]
    if rule.parent_mode != "paragraph":
        return []
    parents: list[ParentChunk] = []
    cleaned = clean_text(text, rule)
    for raw in _splitter_chunks(cleaned, rule.mode, rule.segmentation, max_segmentation_tokens):
        if raw.strip() and (content := _strip_leading_period(raw)):
            parents.append(ParentChunk(content, text_hash(raw), _children(content, rule, max_segmentation_tokens)))
    return parents
