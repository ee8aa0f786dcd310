"""The whole parse() on hostile messages at two sizes: the audit of issue 10, kept runnable.

    .venv/bin/python bench/hostile_parse.py                  # 500 KB and 2 MB
    .venv/bin/python bench/hostile_parse.py 100000,400000 "html p" "from lt"

Each case is a message whose HTML body, text body or one header repeats a pattern that made
some parser on the way superlinear (unclosed attribute quotes, parameter lists, angle brackets
in addresses, blank lines, quote markers...). Printed: seconds at each size (no time budget), and
a flag when the time grew much faster than the size. Every case was linear when this was
written; a flag means a regression.
"""

from __future__ import annotations

import sys
import time

from intake.mail import parse


def fill(p, n):
    return (p * (n // len(p) + 1))[:n]

def html(p): return lambda n: b"From: a@b.example\r\nSubject: s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + fill(p, n).encode()
def text(p): return lambda n: b"From: a@b.example\r\nSubject: s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + fill(p, n).encode()
def header(name, p): return lambda n: f"From: a@b.example\r\n{name}: ".encode() + fill(p, n).encode() + b"\r\n\r\nbody\r\n"
def many_headers(line): return lambda n: (line * (n // len(line) + 1)).encode()[:n] + b"\r\n\r\nbody"

CASES = {
 "html unclosed quote": html("<a href='"), "html lt": html("<"), "html <a ": html("<a "),
 "html div": html("<div>"), "html br": html("<br>"), "html p": html("<p>x"), "html td": html("<td>"),
 "html nbsp": html("&nbsp;"), "html bq": html("<blockquote>"), "html comment": html("<!--"),
 "html links": html("<a href=http://x.example/y>z</a>"), "html li": html("<ul><li>"),
 "html ordinary": html("<p>Dear team, I would like to <b>apply</b> for the <a href='https://x.example/f'>fellowship</a>.</p>\n<div>Best,<br>Ana</div>\n"),
 "html wrote": html("<div>On Mon wrote:</div><blockquote>"),
 "text newlines": text("\n"), "text spaces": text(" "), "text nbsp": text("\xa0"), "text On": text("On "),
 "text quote": text("> "), "text quote lines": text("> a\n"), "text sig": text("-- \n"),
 "text from": text("From: x\n"), "text a": text("a"), "text thanks": text("Thanks,\n"),
 "text under": text("_"), "text wrote": text("wrote: "), "text date": text("1/1/1 "),
 "text написал": text("написал "), "text ko": text("2020년 "), "text tabs": text("\t"),
 "text dashes": text("-"), "text stars": text("* "), "text On-lines": text("On x\n"),
 "text ordinary": text("Hello, I would like to ask about the deadline for the fellowship.\nThanks,\nAna\n\nOn Mon, Ana <a@b> wrote:\n> hi\n"),
 "subj Re": header("Subject", "Re: "), "subj words": header("Subject", "=?utf-8?q?a?= "),
 "subj tags": header("Subject", "[x] Re: "), "subj token": header("Subject", "[#1]"),
 "subj bad words": header("Subject", "=?utf-8?q?=FF?="), "subj b64": header("Subject", "=?utf-8?b?YWJj?="),
 "from lt": header("From", "<"), "from quote": header("From", '"'), "from paren": header("From", "("),
 "from comma": header("From", ","), "from addrs": header("From", "a@b.example, "),
 "from at": header("From", "@"), "from bs": header("From", "\\"), "from words": header("From", "=?utf-8?q?a?= "),
 "to addrs": header("To", "A <a@b.example>, "), "refs": header("References", "<a@b.example> "),
 "refs lt": header("References", "<"), "irt": header("In-Reply-To", "<"), "date": header("Date", "Mon, 1 "),
 "ctype params": header("Content-Type", 'text/plain; a="b"; '), "ctype semis": header("Content-Type", ";"),
 "mid lt": header("Message-ID", "<"), "return-path": header("Return-Path", "<"),
 "many headers": many_headers("X-A: b\r\n"), "fold": header("Subject", "a\r\n "),
 "auto-sub": header("Auto-Submitted", "auto-replied "), "list-id": header("List-Id", "<"),
}

def run(sizes, names):
    print(f"{'case':22} " + " ".join(f"{s // 1000:>6,} KB" for s in sizes))
    for name in names:
        make = CASES[name]
        row = []
        for n in sizes:
            raw = make(n)
            t = time.perf_counter()
            parse(raw, budget_seconds=None)
            row.append(time.perf_counter() - t)
        ratio = row[-1] / max(row[0], 1e-4)
        flag = "  <-- superlinear?" if ratio > (sizes[-1] / sizes[0]) * 2.5 and row[-1] > 0.05 else ""
        print(f"{name:22} " + " ".join(f"{t:8.3f}" for t in row) + flag, flush=True)

if __name__ == "__main__":
    sizes = [int(x) for x in sys.argv[1].split(",")] if len(sys.argv) > 1 else [500_000, 2_000_000]
    names = sys.argv[2:] or list(CASES)
    run(sizes, names)
