"""Parse time against input size for hostile and ordinary HTML (issue 10).

    .venv/bin/python bench/html_parse.py                # html_to_text and the whole parse()
    .venv/bin/python bench/html_parse.py --compare      # also the candidates that were measured

For each input and size: seconds for ``html_to_text`` and for the whole ``parse()`` of a message
whose only body is that HTML (MIME, headers, HTML to text, latest reply, automation signals),
with no time budget so the figure is the real cost. Linear code shows a time roughly
proportional to size; the old html2text path grew with the square of it.

``--compare`` needs the candidates installed (``pip install html2text selectolax inscriptis
html-text``): html2text on the unclosed-quote input at small sizes (it is quadratic: larger sizes
would take hours), and each C-backed candidate on 2 MB of each input, each in a subprocess killed
after 20 s (lexbor runs for minutes on deep nesting, inside C code nothing can interrupt).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from intake.mail import html_to_text, parse

SIZES = [10_000, 100_000, 500_000, 1_000_000, 2_000_000]
ORDINARY = (
    "<div dir='ltr'><p>Dear fellowship team,</p><p>I would like to <b>apply</b> for the 2027 cohort. "
    "My portfolio is <a href='https://ana.example/portfolio'>here</a> and my CV is attached.</p>"
    "<ul><li>Data engineering, 6 years</li><li>Civic tech volunteer</li></ul>"
    "<table><tr><td>City</td><td>Lagos</td></tr><tr><td>Start</td><td>September</td></tr></table>"
    "<p>Best regards,<br>Ana</p><div class='gmail_quote'>On Mon, Desk wrote:<blockquote>"
    "<p>Thank you for your interest. The deadline is 15 January.</p></blockquote></div></div>\n"
)
INPUTS = {
    "ordinary email HTML": ORDINARY,
    "unclosed quotes <a href='": "<a href='",
    "element-dense <p>x": "<p>x",
    "deep nesting <div>": "<div>",
    "&nbsp; runs": "&nbsp;",
    "bare < runs": "<",
}


def fill(pattern: str, size: int) -> str:
    return (pattern * (size // len(pattern) + 1))[:size]


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) if repeat > 1 else statistics.mean(times)


def measure() -> None:
    print("| input | " + " | ".join(f"{s // 1000:,} KB" for s in SIZES) + " |")
    print("|---|" + "---|" * len(SIZES))
    for name, pattern in INPUTS.items():
        convert, whole = [], []
        for size in SIZES:
            markup = fill(pattern, size)
            raw = b"From: a@b.example\r\nSubject: s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + markup.encode()
            repeat = 3 if size <= 500_000 else 1
            convert.append(best_of(lambda: html_to_text(markup), repeat))
            whole.append(best_of(lambda: parse(raw, budget_seconds=None), repeat))
        print(f"| {name}: html_to_text | " + " | ".join(f"{t:.3f} s" for t in convert) + " |")
        print(f"| {name}: parse() | " + " | ".join(f"{t:.3f} s" for t in whole) + " |", flush=True)


CANDIDATES = {
    "lxml (intake)": "from intake.mail import html_to_text as f",
    "selectolax/lexbor": "from selectolax.lexbor import LexborHTMLParser\nf = lambda s: LexborHTMLParser(s).text()",
    "inscriptis": "from inscriptis import get_text as f",
    "html-text": "from html_text import extract_text as f",
}


def run_isolated(setup: str, pattern: str, size: int, timeout: float = 20.0) -> str:
    code = (f"{setup}\nimport time\ns = ({pattern!r} * ({size} // {len(pattern)} + 1))[:{size}]\n"
            "t = time.perf_counter(); f(s); print(f'{time.perf_counter() - t:.3f} s')")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"> {timeout:.0f} s"
    return done.stdout.strip() or (done.stderr.strip().splitlines() or ["error"])[-1][:40]


def compare() -> None:
    print("\nhtml2text (the old path) on unclosed quotes:")
    for size in (9_000, 18_000, 36_000, 72_000):
        print(f"  {size // 1000} KB: {run_isolated('from html2text import html2text as f', '<a href=' + chr(39), size, 60)}",
              flush=True)
    print("\nCandidates on 2 MB of each input:")
    print("| input | " + " | ".join(CANDIDATES) + " |")
    print("|---|" + "---|" * len(CANDIDATES))
    for name, pattern in INPUTS.items():
        row = [run_isolated(setup, pattern, 2_000_000) for setup in CANDIDATES.values()]
        print(f"| {name} | " + " | ".join(row) + " |", flush=True)


def main(argv: list[str]) -> int:
    measure()
    if "--compare" in argv:
        compare()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
