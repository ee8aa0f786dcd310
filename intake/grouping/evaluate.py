"""How well grouping matches a labelled set: adjusted Rand index, false and cross-category merges.

The labelled set (``tests/fixtures/grouping/``) is JSON lines of ``{"q", "category", "lang",
"subject", "body"}``: ``q`` names the question a paraphrase asks, or is null for an inquiry that
asks something nobody else does. ``bench/grouping.py`` prints these figures and a test holds a
floor under them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Sequence

from sklearn.metrics import adjusted_rand_score

from intake.grouping.cluster import Candidate, Cluster

# Categories that are never grouped (spam and robots are not people asking a question).
UNGROUPED_CATEGORIES = ("spam", "automated")


@dataclass(frozen=True)
class Labelled:
    candidate: Candidate
    question: str | None


@dataclass(frozen=True)
class Quality:
    ari: float
    groups: int
    grouped: int  # inquiries placed in some group
    false_merges: int  # pairs grouped together that ask different questions
    cross_category_merges: int  # pairs grouped together whose labelled categories differ
    questions: int
    split_questions: int  # labelled questions spread over more than one group (or left out)


def load(paths: Sequence[Path]) -> list[Labelled]:
    rows: list[Labelled] = []
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                candidate = Candidate(len(rows) + 1, item["category"], item.get("lang"),
                                      item["subject"], item["body"])
                rows.append(Labelled(candidate, item.get("q")))
    return rows


def score(items: Sequence[Labelled], clusters: Sequence[Cluster]) -> Quality:
    found = {member: index for index, c in enumerate(clusters) for member in c.ids}
    gold = [it.question or f"single:{it.candidate.id}" for it in items]
    predicted = [f"group:{found[it.candidate.id]}" if it.candidate.id in found else f"single:{it.candidate.id}"
                 for it in items]
    by_id = {it.candidate.id: it for it in items}
    false_merges = cross = 0
    for c in clusters:
        for a, b in combinations(c.ids, 2):
            ia, ib = by_id[a], by_id[b]
            false_merges += (ia.question is None or ia.question != ib.question)
            cross += ia.candidate.category != ib.candidate.category
    questions = {it.question for it in items if it.question}
    split = sum(
        1 for q in questions
        if len({predicted[i] for i, it in enumerate(items) if it.question == q}) > 1
    )
    return Quality(
        ari=float(adjusted_rand_score(gold, predicted)),
        groups=len(clusters),
        grouped=len(found),
        false_merges=int(false_merges),
        cross_category_merges=int(cross),
        questions=len(questions),
        split_questions=split,
    )


def groupable(items: Sequence[Labelled]) -> list[Candidate]:
    """The candidates grouping would see: spam and automated mail never are."""
    return [it.candidate for it in items if it.candidate.category not in UNGROUPED_CATEGORIES]
