"""How well does intake.mail.latest_reply strip quotes and signatures? Prints figures per corpus.

    .venv/bin/python bench/reply_eval.py [--verbose] [--library-only] [CORPUS_DIR]
    .venv/bin/python bench/reply_eval.py --fuzz 240

--fuzz SECONDS times latest_reply on random 1,000-20,000-character bodies built from quote and
signature tokens (regex back-tracking hunt) and prints the slowest.
--library-only measures the two libraries alone (mail-parser-reply's latest reply for text,
quotequail's unquoted HTML for HTML), without intake's extra nets, for comparison.

For each message: is the latest reply non-empty, shorter than the full body, and free of quote
markers ("> " lines, "On ... wrote:", "-----Original Message-----")? Where the upstream
projects' own tests state an expected reply, that is checked too:
- talon: standard_replies/*.eml expect "Hello" unless a `*_reply_text` file gives the reply;
  html_replies/*.html expect "Hi. I am fine." (and not the quoted "Hello! How are you?");
  OLK_SRC_BODY_SECTION expects "Reply"; reply-separated-by-hr expects "Hi there".
  talon keeps signatures and intake strips them, so comparisons ignore a trailing signature.
- zapier/email-reply-parser: the assertions of its test suite that concern the reply
  (words that must or must not be in it).
"""

from __future__ import annotations

import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import quotequail
from mailparser_reply import EmailReplyParser

from intake.mail import UnparseableMessage, html_to_text, parse
from intake.mail import latest_reply as intake_latest_reply
from intake.mail.replies import REPLY_LANGUAGES

_LIBRARY = EmailReplyParser(languages=REPLY_LANGUAGES)


def library_latest_reply(text: str, html: str | None = None) -> str:
    """The libraries alone: quotequail's expanded HTML, else mail-parser-reply on the text."""
    if html:
        parts = quotequail.quote_html(html)
        if len(parts) > 1:
            return html_to_text("".join(chunk for expanded, chunk in parts if expanded))
    return _LIBRARY.parse_reply(text) or ""


latest_reply = intake_latest_reply

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

QUOTE_MARKERS = re.compile(
    r"(?im)^[ \t]*>|^.{0,10}\bon\b.{0,200}\bwrote:|-----\s*original message\s*-----"
)
WS = re.compile(r"\s+")

# (must contain, must not contain) from zapier/email-reply-parser's test suite.
ZAPIER_EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "email_1_1": (["folks"], ["riak-users"]),
    "email_1_2": (["Hi,", "You can list the keys for the bucket"], ["riak-users"]),
    "email_1_4": (["Awesome"], ["Loader"]),
    "email_1_6": (["I get"], ["wrote:"]),
    "email_1_7": ([":+1:"], ["Steps 0-2"]),
    "email_iPhone": ([], ["Sent from my iPhone"]),
    "email_one_is_not_on": ([], ["On Oct 1, 2012, at 11:55 PM, Dave Tapley wrote:"]),
    "email_gmail": ([], ["xxx@gmail.com"]),
    "correct_sig": ([], ["\n--"]),
}
TALON_HTML_EXPECTED = {
    "OLK_SRC_BODY_SECTION": "Reply",
    "reply-separated-by-hr": "Hi there Bob",  # talon 1.6+; older talon dropped "Bob"
}


@dataclass
class Tally:
    name: str
    total: int = 0
    nonempty: int = 0
    shorter: int = 0
    unquoted: int = 0
    good: int = 0
    expected: int = 0
    expected_ok: int = 0
    seconds: float = 0.0
    misses: list[str] = field(default_factory=list)

    def add(self, label: str, full: str, reply: str, expectation: bool | None) -> None:
        self.total += 1
        checks = (bool(reply.strip()), len(reply.strip()) < len(full.strip()), not QUOTE_MARKERS.search(reply))
        self.nonempty += checks[0]
        self.shorter += checks[1]
        self.unquoted += checks[2]
        self.good += all(checks)
        if expectation is not None:
            self.expected += 1
            self.expected_ok += expectation
        if not all(checks) or expectation is False:
            self.misses.append(f"{label}: nonempty={checks[0]} shorter={checks[1]} "
                               f"unquoted={checks[2]} expected={expectation} reply={reply[:80]!r}")

    def row(self) -> str:
        expected = f"{self.expected_ok}/{self.expected}" if self.expected else "-"
        per = self.seconds / self.total * 1000 if self.total else 0
        return (f"| {self.name} | {self.total} | {self.nonempty} | {self.shorter} | {self.unquoted} "
                f"| {self.good} | {expected} | {per:.1f} ms |")


def squash(text: str) -> str:
    return WS.sub("", text)


def _without_signature(text: str) -> str:
    kept: list[str] = []
    for line in text.strip().split("\n"):
        if line.strip() == "--" or line.startswith(("Sent from", "Sent with", "Thanks,")):
            break
        kept.append(line)
    return "\n".join(kept)


def _html_pair(markup: str) -> tuple[str, str]:
    full = html_to_text(markup)
    return full, latest_reply(full, markup)


def eval_talon(root: Path) -> Tally:
    tally = Tally("talon-replies")
    for path in sorted(root.iterdir()):
        if path.name.endswith("_reply_text"):
            continue
        start = time.perf_counter()
        expectation: bool | None = None
        if path.suffix == ".eml":
            try:
                parsed = parse(path.read_bytes())
            except UnparseableMessage:
                continue
            full = parsed.text
            reply = latest_reply(full, None if parsed.text and not parsed.html else parsed.html) \
                if latest_reply is not intake_latest_reply else parsed.latest_reply
            if path.name.startswith("standard_replies__"):
                expected_file = path.with_name(path.stem + "_reply_text")
                expected = expected_file.read_text() if expected_file.exists() else "Hello"
                expectation = squash(reply) == squash(_without_signature(expected))
        else:
            full, reply = _html_pair(path.read_text(encoding="utf-8", errors="replace"))
            if path.stem.startswith("html_replies__"):
                expectation = "Hi.Iamfine." in squash(reply) and "Hello!Howareyou?" not in squash(reply)
            elif path.stem in TALON_HTML_EXPECTED:
                expectation = squash(reply) == squash(TALON_HTML_EXPECTED[path.stem])
        tally.seconds += time.perf_counter() - start
        tally.add(path.name, full, reply, expectation)
    return tally


def eval_zapier(root: Path) -> Tally:
    tally = Tally("zapier-email-reply-parser")
    for path in sorted(root.glob("*.txt")):
        full = path.read_text(encoding="utf-8", errors="replace")
        start = time.perf_counter()
        reply = latest_reply(full)
        tally.seconds += time.perf_counter() - start
        expectation: bool | None = None
        if path.stem in ZAPIER_EXPECTED:
            must, must_not = ZAPIER_EXPECTED[path.stem]
            expectation = all(m in reply for m in must) and not any(m in reply for m in must_not)
        tally.add(path.name, full, reply, expectation)
    return tally


def eval_quotequail(root: Path) -> Tally:
    tally = Tally("quotequail-html")
    for path in sorted(root.glob("*.html")):
        start = time.perf_counter()
        full, reply = _html_pair(path.read_text(encoding="utf-8", errors="replace"))
        tally.seconds += time.perf_counter() - start
        tally.add(path.name, full, reply, None)
    return tally


FUZZ_TOKENS = ["\n", " ", "\xa0", "\t", "On ", "wrote:", "> ", ">", "-", "--", "_", "From:",
               "Sent:", "To:", "Thanks,", "a", "word ", "\u2028", "\r", "Sent from my ", "*", "=",
               "\u3000", "\x0b", "\x0c", "\x1c", "\x85"]


def fuzz(seconds: float) -> None:
    rng = random.Random(1)
    timings: list[tuple[float, str]] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        weights = [rng.random() ** 3 for _ in FUZZ_TOKENS]
        body = "".join(rng.choices(FUZZ_TOKENS, weights, k=rng.choice([1000, 5000, 20000])))
        began = time.perf_counter()
        intake_latest_reply(body)
        timings.append((time.perf_counter() - began, body[:40]))
    timings.sort(reverse=True)
    print(f"{len(timings)} bodies; slowest: " + ", ".join(f"{t:.2f} s {b!r}" for t, b in timings[:3]))


def main(argv: list[str]) -> int:
    global latest_reply
    if "--fuzz" in argv:
        fuzz(float(argv[argv.index("--fuzz") + 1]))
        return 0
    verbose = "--verbose" in argv
    if "--library-only" in argv:
        latest_reply = library_latest_reply
    args = [a for a in argv if not a.startswith("--")]
    corpus = Path(args[0]) if args else DEFAULT_CORPUS
    if not corpus.is_dir():
        print(f"corpus not found: {corpus}", file=sys.stderr)
        return 2
    tallies = [
        eval_talon(corpus / "talon-replies"),
        eval_zapier(corpus / "zapier-email-reply-parser"),
        eval_quotequail(corpus / "quotequail-html"),
    ]
    print("| corpus | messages | non-empty | shorter than body | no quote markers | all three "
          "| matches upstream expectation | time per message |")
    print("|---|---|---|---|---|---|---|---|")
    for tally in tallies:
        print(tally.row())
    if verbose:
        for tally in tallies:
            for miss in tally.misses:
                print(f"  {tally.name}: {miss}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
