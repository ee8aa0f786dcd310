"""The latest reply of a message: quoted history and signature removed.

Libraries, and why: mail-parser-reply (maintained, 13 languages incl. en/de/es/fr/ko, handles
"On ... wrote:" headers, Outlook header blocks and "Sent from my ..." signatures) for plain
text; quotequail (maintained by Close) for HTML, where the quote is marked up
(gmail_quote, blockquote, Outlook's divRplyFwdMsg) and is lost once converted to text.
quotequail's plain-text patterns also run after mail-parser-reply as a second net: they know
Portuguese ("Em ... escreveu:"), which mail-parser-reply lacks. talon and email-reply-parser
are unmaintained.
"""

from __future__ import annotations

import re
import textwrap

import quotequail
from mailparser_reply import EmailReplyParser

from .bodies import html_to_text

# Languages whose reply headers mail-parser-reply should look for. More languages mean more
# patterns (slower, and more chance of a false split), so only those our applicants write.
REPLY_LANGUAGES = ["en", "de", "es", "fr", "it", "nl", "ko"]

# The reply is at the top: the tail of a very long body is quoted history or junk, and regex
# based parsers must not spend seconds on it (the pathological fixture is built for that).
MAX_REPLY_INPUT = 30_000

# mail-parser-reply's "On ... wrote:" pattern is quadratic in the length of a line that starts
# with "On"; lines longer than this are wrapped first (a 6,000-character line took 3 s).
MAX_LINE = 1000

# A sign-off block longer than this is more likely a wrong match than a signature.
MAX_SIGNATURE_LINES = 8
# Words of the attribution and forward lines quotequail recognizes (en, de, fr, es, pt, nl, sv,
# da, no, fi, pl, ru, it, tr, ko, zh) and the header-block openers of quoted Outlook messages.
_MAYBE_QUOTE_START = re.compile(
    r"wrote|schrieb|écrit|escribió|escreveu|schreef|skrev|kirjoitti|napisał|написал|scrisse|"
    r"yazdı|작성|寫道|写道|original message|forwarded message|"
    r"^\s*\*?(from|von|de|da|van|från|fra|od|от)\s*\*?\s*:",
    re.IGNORECASE | re.MULTILINE,
)
# Texts longer than this are searched for the start of a quote in their first part only.
REPLY_SEARCH_CHARS = 3000
# How far down quotequail looks for the start of a quote.
QUOTE_SEARCH_LINES = 80
# quotequail walks the whole HTML tree in Python (300 KB of `<p>x` took 1.6 s): markup with more
# tags than this takes the text path instead, which finds the same quotes as ">" lines.
MAX_QUOTE_HTML_TAGS = 20_000

_PARSER = EmailReplyParser(languages=REPLY_LANGUAGES)

_QUOTE_LINE = re.compile(r"^[ \t]*>")
# A last net after both libraries, for what they miss: Portuguese and Russian attributions,
# attributions that start with a date and wrap over lines (Android), Outlook-style header
# blocks in languages mail-parser-reply lacks (pt, ru, ...), and Korean (mail-parser-reply
# 1.36's own "ko" pattern never matches: its negative lookahead rejects the line itself).
_WROTE = r"(?:wrote|schrieb|a écrit|escribió|escreveu|ha scritto|schreef|написал[аи]?|пишет)"
_FROM = r"(?:from|от|de|von|da|van|od|från|fra)"
_SENT = (r"(?:sent|to|date|subject|отправлено|дата|кому|тема|enviado|enviada|fecha|para|data"
         r"|assunto|asunto|gesendet|an|datum|betreff|envoyé|à|objet|inviato|verzonden|wysłano|skickat)")
_CUT_MARKERS = re.compile(
    r"(?im)^(?:-{2,}\s*original message\s*-{2,}"
    r"|_{8,}\s*$"
    rf"|(?:-+\s*)?(?:on|am|le|el|em|il|op)\s.{{0,200}}?{_WROTE}\s*:\s*$"  # Yahoo: "--- On ..."
    rf"|\d{{1,4}}[./-]\d{{1,2}}[./-]\d{{1,4}}[^\n]{{0,200}}(?:\n[^\n]{{0,200}}){{0,2}}?{_WROTE}\s*:\s*$"
    rf"|[^\n]{{0,200}}(?:написал[аи]?|пишет)\s*:\s*$"
    rf"|[* ]*{_FROM}\s*:[^\n]*\n(?:[^\n]*\n){{0,2}}?[* ]*{_SENT}\s*:"
    r"|\d{4}년\s.{0,200}?님이\s?(?:작성|작성하였습니다|씀)\s*:\s*$)"
)
# The attribution line of a ">"-quoted reply, for bottom-posted and interleaved answers.
_ATTRIBUTION = re.compile(
    rf"(?im)^(?:-+\s*)?(?:on|am|le|el|em|il|op)\s.{{0,200}}?{_WROTE}\s*:[ \t]*$"
)
_HARD_MARKERS = re.compile(r"(?im)^(?:-{2,}\s*original message\s*-{2,}|_{8,}\s*$)")
# A top reply shorter than this ("Hi,") may be a greeting above a bottom-posted answer.
SHORT_TOP_REPLY = 40

# Horizontal rules (html_to_text writes <hr> as "* * *") left dangling where a quote was cut.
_RULE_LINE = re.compile(r"\* \* \*|-{3,}|_{3,}|={3,}")
# Runs of blank lines make mail-parser-reply's signature pattern super-linear (30,000 newlines
# took 95 s). The library strips every line anyway; doing it first and collapsing more than
# two blank lines in a row (which carry no meaning) keeps it linear.
_BLANK_RUN = re.compile(r"\n{4,}")


def _strip_quote_lines(text: str) -> str:
    kept = [line for line in text.split("\n") if not _QUOTE_LINE.match(line)]
    return "\n".join(kept).strip()


def _library_reply(text: str) -> str:
    """mail-parser-reply's newest fragment, without its signature when that is short.

    Its signature patterns ("Thanks,", "Best,") cut everything after them, so a long cut is a
    false positive (a reply that says "Thanks, ..." mid-text): keep the content then.
    """
    replies = _PARSER.read(text).replies
    if not replies:
        return ""
    first = replies[0]
    if first.signatures and first.signatures.count("\n") < MAX_SIGNATURE_LINES:
        return first.body
    return first.full_body


def _wrap_long_lines(text: str) -> str:
    if all(len(line) <= MAX_LINE for line in text.split("\n")):
        return text
    lines: list[str] = []
    for line in text.split("\n"):
        if len(line) <= MAX_LINE:
            lines.append(line)
        else:
            lines.extend(textwrap.wrap(line, MAX_LINE, break_on_hyphens=False) or [""])
    return "\n".join(lines)


def _interleaved_reply(text: str) -> str:
    """Greeting + the answers written between or below ">" quotes (bottom-posting, inline
    answers), which top-reply parsers drop; "" when the message is not shaped like that."""
    found = _ATTRIBUTION.search(text)
    if not found:
        return ""
    head, tail = text[: found.start()], text[found.end():]
    if not re.match(r"\s*>", tail):
        return ""
    stop = _HARD_MARKERS.search(tail)
    if stop:
        tail = tail[: stop.start()]
    answers = "\n".join(line for line in tail.split("\n") if not _QUOTE_LINE.match(line)).strip()
    if not answers:
        return ""
    return _strip_sig_dash(f"{head.strip()}\n\n{answers}".strip())


def _text_reply(text: str) -> str:
    text = text.replace("\r\n", "\n")[:MAX_REPLY_INPUT]
    text = _BLANK_RUN.sub("\n\n\n", "\n".join(line.strip() for line in text.split("\n")))
    text = _wrap_long_lines(text)
    top = _long_reply(text) if len(text) > REPLY_SEARCH_CHARS else _top_reply(text)
    if len("".join(top.split())) < SHORT_TOP_REPLY:
        interleaved = _interleaved_reply(text)
        if len(interleaved) > len(top) + SHORT_TOP_REPLY:
            return interleaved
    return top


def _long_reply(text: str) -> str:
    """The reply of a long text, searching the libraries' way in its head only.

    Their patterns cost more than linear time (a 10 KB body took 8 ms, most of a parse), while
    the newest reply sits at the top: when the head holds the start of a quote, the cut is
    there; when it does not, the reply runs past it, and only the linear markers ("-----Original
    Message-----", "On ... wrote:", ">" lines) are looked for in the rest.
    """
    head = text[: text.rfind("\n", 0, REPLY_SEARCH_CHARS) + 1 or REPLY_SEARCH_CHARS]
    marker = _CUT_MARKERS.search(head)
    if marker:
        # The reply ends there whatever the libraries find: they read only what is above it
        # (a 10 KB message quoting the thread below "On ... wrote:" parsed in 3.9 ms, 2.4 of
        # them in mail-parser-reply reading the quote).
        return _top_reply(head[: marker.start()])
    reply = _top_reply(head)
    if len(reply) < len(head.strip()) - SHORT_TOP_REPLY:
        return reply
    cut = _CUT_MARKERS.search(text)
    body = text[: cut.start()] if cut else text
    return _strip_trailing_rules(_strip_sig_dash(_strip_quote_lines(body)))


def _top_reply(text: str) -> str:
    try:
        reply = _library_reply(text)
    except Exception:  # regex engine limits on hostile input
        reply = text
    try:
        # quotequail tries every pattern at every line (quadratic in the lines it is given);
        # an attribution line ("On ... wrote:") sits near the top of what is left, so it
        # searches the first lines only and the cut applies to the whole reply.
        head = "\n".join(reply.split("\n")[:QUOTE_SEARCH_LINES])
        # It costs about as much as the rest of the parse, so it runs only when a line looks
        # like the start of a quote in one of the languages it knows.
        if _MAYBE_QUOTE_START.search(head):
            parts = quotequail.quote(head)
            if parts and parts[0][0] and len(parts) > 1:
                reply = parts[0][1]
    except Exception:
        pass
    cut = _CUT_MARKERS.search(reply)
    if cut:
        reply = reply[: cut.start()]
    return _strip_trailing_rules(_strip_sig_dash(_strip_quote_lines(reply)))


def _strip_trailing_rules(text: str) -> str:
    lines = text.rstrip().split("\n")
    while lines and (not lines[-1].strip() or _RULE_LINE.fullmatch(lines[-1].strip())):
        lines.pop()
    return "\n".join(lines).strip()


def _strip_sig_dash(text: str) -> str:
    """Cut at the last RFC 3676 signature separator ("-- ") when a short block follows it."""
    lines = text.split("\n")
    for index in range(len(lines) - 1, 0, -1):
        if lines[index].strip() == "--":
            if len(lines) - index - 1 <= MAX_SIGNATURE_LINES:
                return "\n".join(lines[:index]).strip()
            break
    return text


def _html_reply(markup: str) -> str:
    markup = markup[: MAX_REPLY_INPUT * 10]
    if markup.count("<") > MAX_QUOTE_HTML_TAGS:
        return ""
    try:
        parts = quotequail.quote_html(markup)
    except Exception:
        return ""
    leading: list[str] = []
    for expanded, chunk in parts:
        if not expanded:
            break
        leading.append(chunk)
    if len(leading) == len(parts):  # no quote found in the markup
        return ""
    return html_to_text("".join(leading))


def latest_reply(text: str, html: str | None = None) -> str:
    """The newest part of a message a person wrote, without quotes or signature.

    With `html` (pass it when the message has no text/plain part), the HTML quote markup is
    used first; the text path then removes signatures. When nothing is left (a message that is
    all quote) the whole text is returned, so callers never get an empty reply for a non-empty
    body.
    """
    text = (text or "").replace("\x00", "")
    candidate = ""
    if html:
        candidate = _html_reply(html)
    if candidate:
        reply = _text_reply(candidate) or candidate
    else:
        reply = _text_reply(text)
    # Never longer than what was searched: a reply is read in Slack, not a 2 MB body.
    return (reply.strip() or text.strip())[:MAX_REPLY_INPUT]
