"""Body text: HTML to readable text, and safe attachment file names."""

from __future__ import annotations

import html
import re
import unicodedata

import html2text

# Why html2text rather than inscriptis: it is already a dependency of intake, is pure Python
# (no lxml build), has been maintained for years, and keeps link targets next to their text,
# which staff need to judge an inquiry ("apply here: https://..."). inscriptis lays out tables
# better, but inquiry mail is prose, and html2text's Markdown-ish output reads fine in Slack.
# Its limits: emphasis and images are dropped (configured below), and layout tables come out
# as runs of lines.

# Above this size the HTML is cut before conversion: html2text is pure Python (~1 MB/s here),
# and no person writes an inquiry that long; the raw message keeps everything.
MAX_HTML_CHARS = 2_000_000

_TAG = re.compile(r"<[^>]*>")
_SCRIPT_STYLE = re.compile(r"(?is)<(script|style|head)\b.*?</\1\s*>")
_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]+")


def _converter() -> html2text.HTML2Text:
    conv = html2text.HTML2Text()
    conv.body_width = 0  # never hard-wrap: Slack and the reply parser wrap by themselves
    conv.ignore_images = True
    conv.ignore_emphasis = True
    conv.ignore_mailto_links = True  # "Ann (mailto:ann@x)" only repeats the address
    conv.unicode_snob = True  # keep real characters rather than ASCII approximations
    conv.protect_links = True
    conv.single_line_break = False
    return conv


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\xa0", " ").replace("\x00", "")
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_RUNS.sub("\n\n", text).strip()


def html_to_text(markup: str) -> str:
    """Readable plain text from an HTML body; a crude tag strip if html2text ever fails."""
    if not markup or not markup.strip():
        return ""
    markup = markup[:MAX_HTML_CHARS]
    try:
        return _tidy(_converter().handle(markup))
    except Exception:  # a parser bug on hostile markup must not lose the message
        stripped = _TAG.sub(" ", _SCRIPT_STYLE.sub(" ", markup))
        return _tidy(html.unescape(stripped))


def safe_filename(name: str | None) -> str | None:
    """An attachment name without path separators or control characters (it is untrusted)."""
    if not name:
        return None
    name = unicodedata.normalize("NFC", name)
    name = _UNSAFE_NAME.sub("_", name).strip().strip(".") or None
    return name[:255] if name else None
