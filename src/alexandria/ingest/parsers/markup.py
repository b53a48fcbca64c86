"""HTML to plain text with BeautifulSoup (lxml's HTML parser; bs4 detects the encoding from BOM/meta/content).

Dify's HtmlExtractor is ``BeautifulSoup(fp, "html.parser").get_text().strip()``: no block separation, and
``<script>`` / ``<style>`` bodies leak into the text. Here the text of ``head`` (title included), ``script``,
``style``, ``noscript``, ``template``, ``svg`` and embedded objects is dropped; whitespace is collapsed as a
browser would (kept as is inside ``<pre>``); paragraph-level blocks (``p``, headings, lists, tables,
``pre``, ``blockquote``, sectioning elements) are separated by a blank line, line-level ones (``div``,
``li``, ``tr``, ``br``, ``dt``/``dd``, captions) by a newline, and table cells in a row by `` | ``.
"""

from __future__ import annotations

import re
import warnings

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning
from bs4.element import CData, NavigableString, PageElement, Tag

from alexandria.ingest.parsers.errors import ParseFailed

__all__ = ["parse_html"]

# A short upload that looks like a URL or file name, or an XML file named .html, parse fine; the warnings
# are advice to programmers passing the wrong argument. Only these two bs4-specific categories are silenced.
warnings.filterwarnings("ignore", category=MarkupResemblesLocatorWarning)
warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)

_TEXT_TYPES = (NavigableString, CData)  # what get_text() keeps: no comments, doctypes, declarations
_DROP = frozenset(
    ("head", "title", "script", "style", "noscript", "template", "svg", "object", "embed", "iframe", "canvas")
)
_PARAGRAPH_BLOCKS = frozenset((
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "pre", "blockquote", "section",
    "article", "header", "footer", "nav", "aside", "main", "figure", "form", "fieldset", "hr", "address",
    "details",
))  # fmt: skip
_LINE_BLOCKS = frozenset(
    ("div", "li", "dt", "dd", "tr", "caption", "figcaption", "summary", "legend", "option", "thead")
)
_PARAGRAPH = "\ue000"  # private-use sentinels, turned into "\n\n" / "\n" after whitespace collapsing
_LINE = "\ue001"
_PRE_SPACE = "\ue002"  # spaces and tabs inside <pre>, restored after collapsing
_PRE_TAB = "\ue003"
_BREAKS = re.compile(r"\s*[\ue000\ue001][\s\ue000\ue001]*")
_SPACES = re.compile(r"\s+")


def parse_html(data: bytes) -> str:
    """Visible text of an HTML document, blocks on their own lines (see the module docstring)."""
    if not data.strip():
        return ""
    try:
        soup = BeautifulSoup(data, "lxml")
    except Exception as exc:  # lxml / bs4 errors on garbage input
        raise ParseFailed(f"invalid HTML: {exc}") from exc
    text = _SPACES.sub(" ", "".join(_pieces(soup)))
    text = _BREAKS.sub(_break, text).replace(_PRE_SPACE, " ").replace(_PRE_TAB, "\t")
    return text.strip()


def _pieces(root: Tag) -> list[str]:
    """Text pieces and break sentinels in document order (iterative: tree mutations are O(n) each in bs4)."""
    pieces: list[str] = []
    in_pre = 0
    row_has_cell = [False]  # one flag per open table row (rows nest with tables)
    stack: list[PageElement | tuple[str, Tag]] = list(reversed(root.contents))
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):  # leaving a tag
            name = node[1].name
            if name in _PARAGRAPH_BLOCKS:
                pieces.append(_PARAGRAPH)
            elif name in _LINE_BLOCKS:
                pieces.append(_LINE)
            if name == "pre":
                in_pre -= 1
            elif name == "tr":
                row_has_cell.pop()
            continue
        if isinstance(node, Tag):
            name = node.name
            if name in _DROP:
                continue
            if name == "br":
                pieces.append(_LINE)
                continue
            if name in _PARAGRAPH_BLOCKS:
                pieces.append(_PARAGRAPH)
            elif name in _LINE_BLOCKS:
                pieces.append(_LINE)
            if name == "pre":
                in_pre += 1
            elif name == "tr":
                row_has_cell.append(False)
            elif name in ("td", "th"):
                if row_has_cell[-1]:
                    pieces.append(" | ")
                row_has_cell[-1] = True
            stack.append(("leave", node))
            stack.extend(reversed(node.contents))
        elif type(node) in _TEXT_TYPES:
            text = str(node)
            if in_pre:
                text = text.replace("\n", _LINE).replace(" ", _PRE_SPACE).replace("\t", _PRE_TAB)
            pieces.append(text)
    return pieces


def _break(match: re.Match[str]) -> str:
    return "\n\n" if _PARAGRAPH in match.group() else "\n"
