"""Learning from staff: labelled classifications, retraining, evaluation and versioned storage.

`intake train` fits on the seed set plus every staff label, measures macro-F1 on a held-out split
that the fitted model never saw, and stores the model (fitted again on everything) as the new
active `ModelVersion` unless its held-out macro-F1 is worse than the active model's by more than
the margin. Workers pick the new row up on their next check (see `Classifier.model`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from sklearn.metrics import f1_score, precision_recall_fscore_support
from sklearn.model_selection import train_test_split
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from intake.classify.model import (
    Example,
    ModelBundle,
    dedupe,
    fit_bundle,
    load_seed,
    taxonomy_labels,
)
from intake.models import Classification, Inquiry, Message, ModelVersion

log = logging.getLogger(__name__)

DEFAULT_TEST_SIZE = 0.25
SPLIT_SEED = 20260


# --- staff labels -------------------------------------------------------------------------------

def record_staff_label(session: Session, inquiry_id: int, category: str, actor: str) -> Classification:
    """Store a person's label for an inquiry; `intake train` learns from the latest one.

    The caller (the domain's reclassify / spam actions) owns the transaction, updates the inquiry
    itself and records the Event; this only adds the labelled row, tied to the inquiry's first
    inbound message so training can read the text that was labelled.
    """
    if not category:
        raise ValueError("a staff label needs a category")
    first = session.scalar(
        select(Message.id).where(Message.inquiry_id == inquiry_id, Message.direction == "inbound")
        .order_by(Message.id).limit(1)
    )
    row = Classification(
        inquiry_id=inquiry_id, message_id=first, category=category, confidence=1.0,
        source="staff", model_version=None, reasons=[f"staff: {actor}"], actor=actor,
    )
    session.add(row)
    session.flush()
    return row


def staff_examples(session: Session, categories: Sequence[str] | None = None) -> list[Example]:
    """The latest staff label of each inquiry, with the text of its first inbound message."""
    rows = session.scalars(
        select(Classification).where(Classification.source == "staff").order_by(Classification.id)
    ).all()
    latest: dict[int, Classification] = {}
    for row in rows:
        latest[row.inquiry_id] = row
    allowed = set(categories) if categories is not None else None
    examples: list[Example] = []
    for inquiry_id, label in sorted(latest.items()):
        if allowed is not None and label.category not in allowed:
            continue
        message = _first_inbound(session, inquiry_id, label.message_id)
        if message is None:
            continue
        body = (message.latest_reply or "").strip() or (message.text_body or "")
        subject = message.subject or (session.get(Inquiry, inquiry_id).subject or "")
        if not (subject.strip() or body.strip()):
            continue
        examples.append(Example(label.category, subject, body, message.sender_address or "", "staff"))
    return examples


def _first_inbound(session: Session, inquiry_id: int, message_id: int | None) -> Message | None:
    if message_id is not None:
        message = session.get(Message, message_id)
        if message is not None:
            return message
    return session.scalar(
        select(Message).where(Message.inquiry_id == inquiry_id, Message.direction == "inbound")
        .order_by(Message.id).limit(1)
    )


# --- splitting and scoring ----------------------------------------------------------------------

def split(examples: Sequence[Example], test_size: float = DEFAULT_TEST_SIZE,
          seed: int = SPLIT_SEED) -> tuple[list[Example], list[Example]]:
    """A stratified train/test split after de-duplication: no text is on both sides."""
    unique = dedupe(examples)
    labels = [e.category for e in unique]
    counts = {c: labels.count(c) for c in set(labels)}
    # A category with a single example cannot be stratified; it trains and is not tested.
    single = [e for e in unique if counts[e.category] < 2]
    rest = [e for e in unique if counts[e.category] >= 2]
    if len(rest) < 4:
        return list(unique), []
    train, test = train_test_split(
        rest, test_size=test_size, random_state=seed, stratify=[e.category for e in rest]
    )
    return list(train) + single, list(test)


@dataclass
class Scores:
    macro_f1: float
    per_category: dict[str, dict[str, float]]
    labels: list[str]
    confusion: list[list[int]]
    n: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"macro_f1": round(self.macro_f1, 4), "per_category": self.per_category,
                "labels": self.labels, "confusion": self.confusion, "n": self.n, **self.extra}


def score(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str] | None = None) -> Scores:
    from sklearn.metrics import confusion_matrix

    labels = list(labels) if labels else sorted(set(truth) | set(predicted))
    present = [l for l in labels if l in set(truth)]
    p, r, f, s = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    per = {l: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
               "f1": round(float(f[i]), 4), "support": int(s[i])} for i, l in enumerate(labels)}
    macro = float(f1_score(truth, predicted, labels=present, average="macro", zero_division=0)) if present else 0.0
    matrix = confusion_matrix(truth, predicted, labels=labels).tolist()
    return Scores(macro, per, labels, matrix, len(truth))


def evaluate_examples(classifier: Any, examples: Sequence[Example]) -> tuple[Scores, list[str]]:
    """Run the whole classifier (not only the model) on labelled examples."""
    from intake.classify.document import Document

    docs = [Document(subject=e.subject, body=e.body, full_text=e.body, sender_address=e.sender)
            for e in examples]
    predicted = [v.category for v in classifier.classify_many(docs)]
    truth = [e.category for e in examples]
    scores = score(truth, predicted, labels=sorted(set(truth) | set(predicted)))
    # A "legitimate inquiry" is anything a person wrote: not spam, not automated mail.
    legit_as_spam = sum(1 for t, p in zip(truth, predicted) if p == "spam" and t not in ("spam", "automated"))
    automated_missed = sum(1 for t, p in zip(truth, predicted) if t == "automated" and p != "automated")
    scores.extra.update(legit_as_spam=legit_as_spam, automated_missed=automated_missed)
    return scores, predicted


def heldout_scores(bundle: ModelBundle, test: Sequence[Example], settings: Any) -> Scores:
    """Scores of a bundle on examples it was not fitted on, through the full classifier."""
    from intake.classify.classifier import Classifier

    classifier = Classifier(settings, db=None)
    classifier._bundle = bundle  # a fixed model: no database lookups
    scores, _ = evaluate_examples(classifier, test)
    return scores


# --- intake train -------------------------------------------------------------------------------

@dataclass
class TrainResult:
    stored: bool
    version: str | None
    macro_f1: float
    previous_f1: float | None
    trained_on: int
    tested_on: int
    staff_labels: int
    message: str
    scores: Scores | None = None


def train(rt: Any, *, force: bool = False, margin: float | None = None,
          test_size: float = DEFAULT_TEST_SIZE) -> TrainResult:
    settings = rt.settings
    margin = settings.classifier.train_margin if margin is None else margin
    categories = settings.category_names
    with rt.db.session() as session:
        staff = staff_examples(session, categories)
        active = session.scalar(
            select(ModelVersion).where(ModelVersion.active.is_(True)).order_by(ModelVersion.id.desc()).limit(1)
        )
        previous_f1 = _stored_f1(active)
        previous_version = active.version if active else None
    examples = load_seed(taxonomy_labels(settings.categories)) + staff
    train_set, test_set = split(examples, test_size)
    if not test_set:
        raise ValueError("not enough labelled examples to hold any out for evaluation")
    stages = 3 if previous_f1 is not None else 4
    # Stage lines (INFO, shown by `intake train` on stderr): the fits take tens of seconds.
    with _stage(1, stages, f"fitting a candidate on {len(train_set)} examples "
                           f"({len(staff)} staff labels), holding out {len(test_set)}"):
        candidate = fit_bundle(train_set, "candidate")
        scores = heldout_scores(candidate, test_set, settings)
    if previous_f1 is None:
        # No stored model yet: the bar is the seed-only model on the same held-out split.
        seed_train = [e for e in train_set if e.origin == "seed"]
        with _stage(2, stages, f"fitting the seed-only baseline on {len(seed_train)} examples"):
            baseline = fit_bundle(seed_train, "seed-baseline", temperature=candidate.temperature)
            previous_f1 = heldout_scores(baseline, test_set, settings).macro_f1
        previous_version = previous_version or "seed"
    if scores.macro_f1 < previous_f1 - margin and not force:
        return TrainResult(
            False, None, scores.macro_f1, previous_f1, len(train_set), len(test_set), len(staff),
            f"not stored: held-out macro-F1 {scores.macro_f1:.3f} is more than {margin:.3f} below "
            f"{previous_version}'s {previous_f1:.3f}; rerun with --force to store it anyway",
            scores,
        )
    everything = dedupe(examples)
    digest = hashlib.sha256("\n".join(sorted(e.category + "|" + e.text() for e in everything)).encode())
    version = f"v{dt.datetime.now(dt.timezone.utc):%Y%m%d%H%M%S}-{digest.hexdigest()[:8]}"
    with _stage(stages - 1, stages, f"fitting the final model on all {len(everything)} examples"):
        final = fit_bundle(everything, version, temperature=candidate.temperature)
    metrics = {**scores.as_dict(), "heldout": len(test_set), "staff_labels": len(staff),
               "previous_version": previous_version, "previous_macro_f1": previous_f1}
    final.metrics = metrics
    log.info("[%d/%d] storing %s as the active model", stages, stages, version)
    with rt.db.session() as session:
        session.execute(update(ModelVersion).values(active=False))
        version_row = ModelVersion(version=version, blob=final.dumps(), metrics=metrics,
                                   trained_on=len(everything), active=True)
        session.add(version_row)
    return TrainResult(
        True, version, scores.macro_f1, previous_f1, len(train_set), len(test_set), len(staff),
        f"stored {version}: held-out macro-F1 {scores.macro_f1:.3f} (was {previous_f1:.3f})", scores,
    )


@contextlib.contextmanager
def _stage(number: int, total: int, what: str) -> Iterator[None]:
    """Log one stage of `intake train` as it starts and how long it took."""
    log.info("[%d/%d] %s...", number, total, what)
    started = time.monotonic()
    yield
    log.info("[%d/%d] done in %.1f s", number, total, time.monotonic() - started)


def _stored_f1(row: ModelVersion | None) -> float | None:
    if row is None or not isinstance(row.metrics, dict):
        return None
    value = row.metrics.get("macro_f1")
    return float(value) if isinstance(value, (int, float)) else None
