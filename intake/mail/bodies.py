"""Body text: HTML to readable text in linear time, and safe attachment file names.

Why lxml (libxml2's HTML parser) and a small walker of our own, rather than html2text: html2text
sits on the standard library's ``html.parser``, which is quadratic on unclosed attribute quotes
(72 KB of ``<a href='`` took 6 s; 2 MB would take hours) and is pure Python besides (~1 MB/s).
Measured on 2 MB hostile inputs (``bench/html_parse.py``): lxml parses every one in a fraction of
a second and is already installed (quotequail's HTML quote detection runs on it). selectolax
(lexbor) was as fast on flat input but quadratic on deep nesting (2 MB of ``<div>`` or
``<ul><li>`` ran for minutes, inside C code that nothing can interrupt); html5-parser refuses to
load beside pip's lxml (two libxml2 versions); inscriptis and html-text run on lxml too but their
Python layout passes took 2-4 s on 2 MB of ``<br>``. libxml2 also stops at 256 levels of nesting,
which bounds the depth any later step sees.

The walker writes what staff need from an inquiry: paragraphs and line breaks, list items,
``>``-prefixed lines for ``<blockquote>`` (the reply parser drops quoted lines), and the target of
a link beside its text whenever the text does not already show it ("apply here
(https://...)"), so a link whose label lies about its target is visible as such. It walks at
most ``MAX_HTML_ELEMENTS`` elements; past that (no person writes such a message) the rest is
left out and the caller records a defect; the raw message keeps everything.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field

from lxml import etree

# Above this size the HTML is cut before conversion; the raw message keeps everything.
MAX_HTML_CHARS = 2_000_000
# Elements converted with structure. A long newsletter has a few thousand; 2 MB of `<br>` has
# 500,000, and walking them in Python would take seconds.
MAX_HTML_ELEMENTS = 25_000
# Deeper quoting than this is shown at this depth (a prefix per line must stay short).
MAX_QUOTE_DEPTH = 8
MAX_LIST_DEPTH = 8
# A link target longer than this is not repeated beside its text (tracking URLs run to kilobytes).
MAX_SHOWN_HREF = 500

# Both linear: a tag cannot contain "<", so no start position rescans the rest of the text.
_TAG = re.compile(r"<[^<>]*>")
_BLANK_RUNS = re.compile(r"\n\n\n+")
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]+")
# HTML's white space (a no-break space is text, not white space).
_ASCII_SPACE = " \t\n\r\f\v"
_SPACES = re.compile(f"[{_ASCII_SPACE}]+")

# Elements whose content is never text a person reads.
_SKIP = frozenset({"script", "style", "head", "title", "noscript", "template", "svg", "math",
                   "object", "iframe", "select", "textarea", "button"})
# Paragraph-like blocks: a blank line before and after.
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table",
                        "blockquote", "pre", "figure", "hr"})
# Other blocks: they start and end a line.
_LINE = frozenset({"div", "li", "tr", "dt", "dd", "section", "article", "header", "footer", "nav",
                   "aside", "main", "form", "fieldset", "address", "center", "caption", "tbody",
                   "thead", "tfoot", "legend", "figcaption", "details", "summary", "body"})
_CELLS = frozenset({"td", "th"})
_LINK_SCHEMES = ("http://", "https://", "ftp://")


@dataclass
class HtmlText:
    """The text of an HTML body, and what could not be converted (for the message's defects)."""

    text: str
    problems: list[str] = field(default_factory=list)


class _Writer:
    """Text assembled in order, with block boundaries expressed as "at least N newlines"."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.trailing_newlines = 0  # newlines at the end of what is written
        self.started = False  # any text written yet (no leading blank lines)
        self.want_newlines = 0
        self.quote_depth = 0
        self.pre_depth = 0
        self.space_pending = False
        self.marker = ""  # a list marker waiting for the item's first text

    def block(self, newlines: int) -> None:
        self.want_newlines = max(self.want_newlines, newlines)
        self.space_pending = False

    def _prefix(self) -> str:
        return "> " * min(self.quote_depth, MAX_QUOTE_DEPTH)

    def flush_newlines(self) -> None:
        self._line_start()

    def _line_start(self) -> None:
        """Emit the newlines a block asked for (never at the very start)."""
        if self.started:
            for _ in range(self.want_newlines - self.trailing_newlines):
                self._newline()
        self.want_newlines = 0

    def _newline(self) -> None:
        # A blank line inside a quote is a quoted line too (">"), as mail clients write it.
        if self.trailing_newlines and self.quote_depth:
            self.out.append(self._prefix().rstrip())
        self.out.append("\n")
        self.trailing_newlines += 1

    def line_break(self) -> None:
        self._line_start()
        self._newline()
        self.started = True
        self.space_pending = False

    def text(self, value: str | None) -> None:
        if not value:
            return
        if self.pre_depth:
            self._write_pre(value)
            return
        collapsed = _SPACES.sub(" ", value)
        if collapsed == " ":
            self.space_pending = self.started and not self.trailing_newlines
            return
        if collapsed.startswith(" ") and self.started and not self.trailing_newlines:
            self.space_pending = True
        collapsed = collapsed.strip(" ")
        self._write(collapsed)
        if value[-1] in _ASCII_SPACE:
            self.space_pending = True

    def _write(self, chunk: str) -> None:
        self._line_start()
        if self.trailing_newlines or not self.started:
            chunk = self._prefix() + self.marker + chunk
            self.marker = ""
        elif self.space_pending:
            chunk = " " + chunk
        self.out.append(chunk)
        self.trailing_newlines = 0
        self.started = True
        self.space_pending = False

    def _write_pre(self, value: str) -> None:
        lines = value.replace("\r\n", "\n").split("\n")
        for index, line in enumerate(lines):
            if index:
                self.line_break()
            if line:
                self._write(line)

    def length(self) -> int:
        return len(self.out)

    def since(self, index: int) -> str:
        return "".join(self.out[index:])

    def result(self) -> str:
        return "".join(self.out)


def _parse(markup: str) -> tuple[etree._Element | None, list[str]]:
    # A parser per call: lxml parser objects keep an error log and are not shared across threads.
    # The declared encoding wins over any <meta charset> in the (already decoded) markup.
    parser = etree.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True,
                              no_network=True, recover=True)
    root = etree.fromstring(markup.encode("utf-8", "replace"), parser)
    problems = []
    if any("Excessive depth" in entry.message for entry in parser.error_log):
        problems.append("HTML nested deeper than 256 levels: the rest was not converted")
    return root, problems


def _href(element: etree._Element) -> str | None:
    href = (element.get("href") or "").strip()
    if not href.lower().startswith(_LINK_SCHEMES) or len(href) > MAX_SHOWN_HREF:
        return None
    return _SPACES.sub("", href)


def _walk(root: etree._Element, writer: _Writer, problems: list[str]) -> None:
    walker = etree.iterwalk(root, events=("start", "end"))
    links: list[tuple[etree._Element, int, str]] = []
    lists: list[list[int]] = []  # per open list: [next number] for <ol>, [] for <ul>
    seen = 0
    for event, element in walker:
        tag = element.tag if isinstance(element.tag, str) else ""
        tag = tag.lower()
        if event == "start":
            seen += 1
            if seen > MAX_HTML_ELEMENTS:
                problems.append(f"HTML has over {MAX_HTML_ELEMENTS:,} elements: the rest was not converted")
                return
            if tag in _SKIP:
                walker.skip_subtree()
                writer.text(element.tail)
                continue
            _open(tag, element, writer, links, lists)
            writer.text(element.text)
        else:
            _close(tag, element, writer, links, lists)
            if element is not root:
                writer.text(element.tail)


def _open(tag: str, element: etree._Element, writer: _Writer,
          links: list[tuple[etree._Element, int, str]], lists: list[list[int]]) -> None:
    if tag in _PARAGRAPH:
        writer.block(2)
    elif tag in _LINE:
        writer.block(1)
    if tag == "br":
        writer.line_break()
    elif tag == "hr":
        writer.text("* * *")
        writer.block(2)
    elif tag == "blockquote":
        writer.flush_newlines()  # the blank line before a quote is not part of it
        writer.quote_depth += 1
    elif tag == "pre":
        writer.pre_depth += 1
    elif tag in ("ul", "ol"):
        lists.append([1] if tag == "ol" else [])
    elif tag == "li":
        indent = "  " * min(max(len(lists) - 1, 0), MAX_LIST_DEPTH)
        current = lists[-1] if lists else []
        if current:
            writer.marker = f"{indent}{current[0]}. "
            current[0] += 1
        else:
            writer.marker = f"{indent}* "
    elif tag in _CELLS:
        writer.space_pending = writer.started and not writer.trailing_newlines
    elif tag == "a":
        href = _href(element)
        if href:
            links.append((element, writer.length(), href))


def _close(tag: str, element: etree._Element, writer: _Writer,
           links: list[tuple[etree._Element, int, str]], lists: list[list[int]]) -> None:
    if tag == "a" and links and links[-1][0] is element:
        _, start, href = links.pop()
        shown = writer.since(start)
        if href not in shown and href.rstrip("/") not in shown:
            writer.space_pending = bool(shown.strip())
            writer.text(f"({href})" if shown.strip() else href)
    elif tag == "blockquote":
        writer.quote_depth = max(0, writer.quote_depth - 1)
    elif tag == "pre":
        writer.pre_depth = max(0, writer.pre_depth - 1)
    elif tag in ("ul", "ol") and lists:
        lists.pop()
    elif tag == "li":
        writer.marker = ""
    elif tag in _CELLS:
        writer.space_pending = True
    if tag in _PARAGRAPH:
        writer.block(2)
    elif tag in _LINE:
        writer.block(1)


def _tidy(text: str) -> str:
    """Trailing spaces and runs of blank lines removed. Line by line rather than with a regex
    like ``[ \\t]+\\n``, which is quadratic on a long run of spaces without a newline (2 MB of
    ``&nbsp;`` would take hours)."""
    text = text.replace("\r\n", "\n").replace("\xa0", " ").replace("\x00", "")
    text = "\n".join(line.rstrip(" \t") for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip()


def convert_html(markup: str) -> HtmlText:
    """Readable plain text from an HTML body, with what could not be converted; never raises."""
    if not markup or not markup.strip():
        return HtmlText("")
    problems: list[str] = []
    if len(markup) > MAX_HTML_CHARS:
        markup = markup[:MAX_HTML_CHARS]
        problems.append(f"HTML body over {MAX_HTML_CHARS:,} characters: the rest was not converted")
    try:
        root, parse_problems = _parse(markup)
        problems += parse_problems
        if root is None:  # nothing but comments or declarations
            return HtmlText("", problems)
        writer = _Writer()
        _walk(root, writer, problems)
        return HtmlText(_tidy(writer.result()), problems)
    except Exception as exc:  # a parser bug on hostile markup must not lose the message
        problems.append(f"HTML conversion failed ({exc.__class__.__name__}): tags stripped instead")
        return HtmlText(strip_tags(markup), problems)


def strip_tags(markup: str) -> str:
    """Text by deleting tags: crude but linear, for when conversion failed or time ran out."""
    return _tidy(html.unescape(_TAG.sub(" ", markup[:MAX_HTML_CHARS])))


def html_to_text(markup: str) -> str:
    """Readable plain text from an HTML body (see :func:`convert_html` for the problems)."""
    return convert_html(markup).text


def safe_filename(name: str | None) -> str | None:
    """An attachment name without path separators or control characters (it is untrusted)."""
    if not name:
        return None
    name = unicodedata.normalize("NFC", name)
    name = _UNSAFE_NAME.sub("_", name).strip().strip(".") or None
    return name[:255] if name else None
