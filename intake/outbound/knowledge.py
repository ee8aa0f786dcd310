"""Suggested answers: the closest approved answer from a small knowledge base.

The knowledge base is a handful of questions with answers staff have approved, written in
INTAKE_CONFIG as ``[[knowledge_base]]`` tables (see ``DEFAULT_KNOWLEDGE_BASE`` for the format).
Matching is TF-IDF cosine similarity from scikit-learn, already a dependency for the classifier:
for tens of entries it is instant, needs no training data and no model download, and its score
is easy to explain ("0.62 similar to: When is the deadline?"). Word n-grams catch the vocabulary,
character n-grams catch inflections and typos ("deadlines", "dead line"); the score is their mean.

A suggestion is only that: nothing is sent without a staff click unless the operator lists the
category in ``[auto_answer] categories``.
"""

from __future__ import annotations

import collections
import functools
import json
import threading
import tomllib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from intake.config import Settings

MAX_TEXT_CHARS = 4000

DEFAULT_KNOWLEDGE_BASE_TOML = '''
[[knowledge_base]]
key = "deadline"
questions = [
  "When is the application deadline?",
  "When do applications close for the fellowship?",
  "Is it too late to apply? What are the key dates of the application cycle?",
]
keywords = ["deadline", "due date", "close", "closing date", "late"]
categories = ["application", "general"]
answer = """Applications for the next fellowship cohort close on the date shown on our \
Apply page, at 23:59 in your own time zone. We read every application after the deadline \
and send decisions by email about eight weeks later."""

[[knowledge_base]]
key = "eligibility"
questions = [
  "Am I eligible to apply for the fellowship?",
  "Who can apply? Do I need a degree or a certain number of years of experience?",
  "Can students or career changers apply?",
]
keywords = ["eligible", "eligibility", "qualify", "requirements", "degree", "experience"]
categories = ["application", "general"]
answer = """Anyone with at least two years of professional experience in technology, \
design, data or policy may apply; no degree is required and career changers are welcome. \
Full-time students are not eligible for this cohort."""

[[knowledge_base]]
key = "stipend"
questions = [
  "Is the fellowship paid? How much is the stipend?",
  "What is the salary or compensation for fellows?",
  "Are there benefits, health insurance or relocation support?",
]
keywords = ["stipend", "salary", "paid", "pay", "compensation", "benefits"]
categories = ["application", "general"]
answer = """Fellows receive a stipend paid monthly for the length of the fellowship, plus \
health insurance. The current amount is listed on our Apply page."""

[[knowledge_base]]
key = "visa"
questions = [
  "Do you sponsor visas for international applicants?",
  "Can I apply if I am not a citizen or need a work permit?",
  "Is the fellowship open to people living abroad?",
]
keywords = ["visa", "sponsor", "sponsorship", "citizen", "work permit", "international"]
categories = ["application", "general"]
answer = """We cannot sponsor work visas. You may apply if you are already authorized to \
work in the country of your host organization for the whole fellowship."""

[[knowledge_base]]
key = "partnership"
questions = [
  "How can our agency host fellows?",
  "How does a government or organization become a partner?",
  "What is the process to partner with the fellowship program?",
]
keywords = ["partner", "partnership", "host", "agency", "government", "city", "department"]
categories = ["partnership"]
answer = """Thank you for your interest in hosting fellows. Partners first meet with our \
partnerships team to scope a project, then sign a memorandum of understanding; projects for \
the next cohort are selected about four months before fellows start. We will be in touch to \
schedule a first call."""
'''


@dataclass(frozen=True)
class Suggestion:
    key: str
    question: str  # the knowledge-base question that matched best
    answer: str
    score: float  # 0..1 cosine similarity


@dataclass(frozen=True)
class Entry:
    key: str
    questions: tuple[str, ...]
    answer: str
    categories: frozenset[str]
    keywords: tuple[str, ...]


def _entries(raw: Sequence[Mapping[str, Any]]) -> tuple[Entry, ...]:
    entries = []
    for i, item in enumerate(raw):
        questions = item.get("questions") or ([item["question"]] if item.get("question") else [])
        answer = item.get("answer")
        if not questions or not answer:
            continue  # an incomplete entry is skipped rather than breaking every suggestion
        entries.append(
            Entry(
                key=str(item.get("key") or f"entry{i + 1}"),
                questions=tuple(str(q) for q in questions),
                answer=str(answer).strip(),
                categories=frozenset(str(c) for c in item.get("categories", []) or []),
                keywords=tuple(str(k) for k in item.get("keywords", []) or []),
            )
        )
    return tuple(entries)


DEFAULT_KNOWLEDGE_BASE = _entries(tomllib.loads(DEFAULT_KNOWLEDGE_BASE_TOML)["knowledge_base"])


def knowledge_base(settings: Settings) -> tuple[Entry, ...]:
    """The operator's ``[[knowledge_base]]`` entries, or the shipped defaults when none."""
    raw = settings.toml.get("knowledge_base")
    if isinstance(raw, list) and raw:
        return _entries(raw)
    return DEFAULT_KNOWLEDGE_BASE


class _Index:
    """Fitted vectorizers and the question matrix for one knowledge base."""

    def __init__(self, entries: tuple[Entry, ...]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.rows: list[tuple[Entry, str]] = []
        docs: list[str] = []
        for entry in entries:
            for question in entry.questions:
                self.rows.append((entry, question))
                # Keywords join every question of their entry so that a short email that only
                # says "visa?" still lands on the right answer.
                docs.append(f"{question} {' '.join(entry.keywords)}")
        self.word = TfidfVectorizer(
            analyzer="word", ngram_range=(1, 2), stop_words="english", sublinear_tf=True
        )
        self.char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
        self.word_matrix = self.word.fit_transform(docs)
        self.char_matrix = self.char.fit_transform(docs)

    def scores(self, text: str) -> list[float]:
        return self.scores_many([text])[0]

    def scores_many(self, texts: Sequence[str]) -> list[list[float]]:
        """Each text's similarity to every question, in one transform for all texts (most of
        the cost of one text is scikit-learn's per-call checking, not the arithmetic)."""
        from sklearn.metrics.pairwise import cosine_similarity

        word = cosine_similarity(self.word.transform(list(texts)), self.word_matrix)
        char = cosine_similarity(self.char.transform(list(texts)), self.char_matrix)
        return [[float((w + c) / 2) for w, c in zip(word_row, char_row)] for word_row, char_row in zip(word, char)]


@functools.lru_cache(maxsize=8)
def _index(key: str) -> _Index:
    entries = tuple(
        Entry(e["key"], tuple(e["questions"]), e["answer"], frozenset(e["categories"]), tuple(e["keywords"]))
        for e in json.loads(key)
    )
    return _Index(entries)


def _cache_key(entries: tuple[Entry, ...]) -> str:
    return json.dumps(
        [
            {"key": e.key, "questions": list(e.questions), "answer": e.answer,
             "categories": sorted(e.categories), "keywords": list(e.keywords)}
            for e in entries
        ]
    )


def suggest_answer(settings: Settings, text: str, category: str | None) -> Suggestion | None:
    """The best approved answer for ``text`` (ideally the latest reply, not the quoted history).

    Entries that list categories are only considered for those categories (any category when
    ``category`` is None). Returns None below the minimum score (``[knowledge] min_score``).
    """
    return suggest_answers(settings, [(text, category)])[0]


class _Remembered:
    """The last few thousand answers, by knowledge base, text and category: a card drawn again
    (an update after the acknowledgment went out) does not score its text again."""

    def __init__(self, size: int = 4096) -> None:
        self._items: collections.OrderedDict[tuple, Suggestion | None] = collections.OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[bool, Suggestion | None]:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return True, self._items[key]
        return False, None

    def put(self, key: tuple, value: Suggestion | None) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_REMEMBERED = _Remembered()


def suggest_answers(settings: Settings, items: Sequence[tuple[str, str | None]]) -> list[Suggestion | None]:
    """:func:`suggest_answer` for several texts, scored together."""
    entries = knowledge_base(settings)
    texts = [((text or "").strip()[:MAX_TEXT_CHARS], category) for text, category in items]
    if not entries:
        return [None] * len(texts)
    base = _cache_key(entries)
    floor = settings.outbound.suggestion_min_score
    answers: list[Suggestion | None] = [None] * len(texts)
    todo: list[int] = []
    for i, (text, category) in enumerate(texts):
        if not text:
            continue
        known, answer = _REMEMBERED.get((base, floor, text, category))
        if known:
            answers[i] = answer
        else:
            todo.append(i)
    if todo:
        index = _index(base)
        for i, scores in zip(todo, index.scores_many([texts[i][0] for i in todo])):
            text, category = texts[i]
            best: Suggestion | None = None
            for (entry, question), score in zip(index.rows, scores):
                if category and entry.categories and category not in entry.categories:
                    continue
                if best is None or score > best.score:
                    best = Suggestion(entry.key, question, entry.answer, round(score, 4))
            answers[i] = best if best is not None and best.score >= floor else None
            _REMEMBERED.put((base, floor, text, category), answers[i])
    return answers
