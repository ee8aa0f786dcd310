"""Grouping near-duplicate questions: quality on the labelled set, and time for 10,000 inquiries.

    .venv/bin/python bench/grouping.py                 # quality + 10,000-inquiry timing
    .venv/bin/python bench/grouping.py --count 20000   # a bigger timing run
    .venv/bin/python bench/grouping.py --database      # also time the whole refresh on SQLite

Quality: adjusted Rand index against the labels of tests/fixtures/grouping/ (10 questions x 6
paraphrases in English, Spanish and French, 60 unrelated inquiries), the pairs merged that ask
different questions (false merges) and those whose labelled categories differ. The held-out file
was written after the topic table was tuned on the main set, so its figure is the honest one
for questions the table was not shaped on. Also printed: the same with topic tokens switched
off (words only), which shows what the cross-language topic table buys.

Timing: the labelled inquiries repeated with a sender's name, a varying sentence and a random
reference number each, so that no two are identical, clustered in one process on one core.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import argparse  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from intake.grouping import evaluate  # noqa: E402
from intake.grouping.cluster import Candidate, Options, cluster  # noqa: E402
from intake.jobs import InlineQueue

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "grouping"
MAIN = [FIXTURES / "questions.jsonl", FIXTURES / "unrelated.jsonl"]
HOLDOUT = [FIXTURES / "holdout.jsonl"]
NAMES = "Ana Ben Chen Dara Eli Fatima Gus Hana Ivan Jia Kofi Lena Malik Noor Omar Pia Quinn Rosa".split()
FILLERS = [
    "I found you through a friend.", "Sorry if this was answered before.", "Thanks for your time.",
    "Hope you are well.", "Me lo recomendó una colega.", "Merci pour votre aide.",
    "I work in a county office.", "Je travaille dans une mairie.", "Trabajo en el sector público.",
]


def quality(paths: list[Path], options: Options, label: str) -> None:
    items = evaluate.load(paths)
    q = evaluate.score(items, cluster(evaluate.groupable(items), options))
    print(f"{label:<30} ARI {q.ari:.3f}  groups {q.groups}  grouped {q.grouped}/{len(items)}  "
          f"false merges {q.false_merges}  cross-category {q.cross_category_merges}  "
          f"questions split {q.split_questions}/{q.questions}")


def synthetic(count: int, seed: int = 7) -> list[Candidate]:
    rng = random.Random(seed)
    base = evaluate.groupable(evaluate.load(MAIN + HOLDOUT))
    out = []
    for i in range(count):
        c = rng.choice(base)
        body = f"{c.body}\n{rng.choice(FILLERS)} Ref {rng.randrange(10**6)}.\n{rng.choice(NAMES)}"
        out.append(replace(c, id=i + 1, body=body))
    return out


def timing(count: int, options: Options) -> None:
    candidates = synthetic(count)
    cluster(candidates[:200], options)  # imports and caches warmed outside the timing
    started = time.perf_counter()
    clusters = cluster(candidates, options)
    elapsed = time.perf_counter() - started
    grouped = sum(len(c.ids) for c in clusters)
    print(f"cluster {count:,} open inquiries: {elapsed:.2f} s on one core "
          f"({len(clusters)} groups, {grouped:,} inquiries grouped, largest {len(clusters[0].ids) if clusters else 0})")


def database_timing(count: int) -> None:
    """The whole refresh (read candidates, cluster, write memberships) on a fresh SQLite file."""
    import tempfile

    from intake.config import Settings
    from intake.grouping import store
    from intake.models import Contact, Inquiry, Message
    from intake.runtime import Runtime

    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime(Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp}/bench.db"}), queue=InlineQueue())
        from intake.migrate import ensure_schema

        ensure_schema(rt.settings.database_url, rt.db.engine)
        with rt.db.session() as session:
            for c in synthetic(count):
                contact = Contact(address=f"person{c.id}@example.org")
                inquiry = Inquiry(contact=contact, subject=c.subject, status="new", category=c.category,
                                  language=c.language)
                session.add_all([contact, inquiry, Message(
                    inquiry=inquiry, direction="inbound", dedupe_key=f"b{c.id}", raw=b"", sha256="",
                    size=0, text_body=c.body, latest_reply=c.body, subject=c.subject)])
        started = time.perf_counter()
        result = store.refresh(rt)
        elapsed = time.perf_counter() - started
        print(f"refresh {count:,} inquiries on SQLite (read, cluster, write): {elapsed:.2f} s "
              f"({result.groups} groups, {result.created} created)")
        started = time.perf_counter()
        again = store.refresh(rt)
        print(f"second refresh, nothing changed: {time.perf_counter() - started:.2f} s "
              f"({again.created} created, {again.dissolved} dissolved)")
        rt.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--database", action="store_true")
    args = parser.parse_args()
    options = Options()
    print(f"options: threshold {options.threshold}, topic weight {options.topic_weight}")
    quality(MAIN, options, "labelled set (120)")
    quality(HOLDOUT, options, "held-out set (30)")
    quality(MAIN + HOLDOUT, options, "both (150)")
    quality(MAIN, replace(options, topic_weight=0.0, threshold=0.3), "labelled set, words only")
    timing(args.count, options)
    if args.database:
        database_timing(args.count)


if __name__ == "__main__":
    main()
