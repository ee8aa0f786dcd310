"""The seed set and the quality targets, measured on a held-out split that training never saw."""

from __future__ import annotations

from collections import Counter

import pytest

from intake.classify.classifier import Classifier
from intake.classify.model import Example, dedupe, fit_bundle, load_seed
from intake.classify.training import evaluate_examples, split
from intake.config import Settings
from intake.classify.language import detect_language

SETTINGS = Settings.from_env({})
PEOPLE_WRITE_IN_OTHER_LANGUAGES = ("application", "applicant_status", "partnership", "press",
                                   "volunteer", "general", "feedback")


def normalized(e: Example) -> str:
    return " ".join(e.text().lower().split())


def test_seed_set_is_rich_enough_in_every_category_and_language():
    seed = load_seed()
    counts = Counter(e.category for e in seed)
    assert set(counts) == set(SETTINGS.category_names)
    assert min(counts.values()) >= 50, counts
    assert len(dedupe(seed)) == len(seed), "the seed set has duplicate texts"
    for category in PEOPLE_WRITE_IN_OTHER_LANGUAGES:
        languages = Counter(detect_language(e.body, SETTINGS) for e in seed if e.category == category)
        for code in ("es", "fr", "pt"):
            assert languages[code] >= 2, (category, languages)


def test_the_split_keeps_every_text_on_one_side_and_every_category_tested():
    # A duplicated example must not end up in both sets.
    seed = load_seed()
    train, test = split(seed + seed[:20])
    assert not {normalized(e) for e in train} & {normalized(e) for e in test}
    assert len(train) + len(test) == len(seed)
    assert {e.category for e in test} == {e.category for e in seed}
    assert 0.2 <= len(test) / len(seed) <= 0.3


@pytest.fixture(scope="module")
def heldout():
    train, test = split(load_seed())
    classifier = Classifier(SETTINGS)
    classifier._bundle = fit_bundle(train, "heldout-test")  # fitted on the training side only
    scores, predicted = evaluate_examples(classifier, test)
    return test, scores, predicted


def test_heldout_macro_f1_meets_the_target(heldout):
    _, scores, _ = heldout
    assert scores.macro_f1 >= 0.85, scores.per_category


def test_no_legitimate_inquiry_is_called_spam(heldout):
    test, scores, predicted = heldout
    wrongly_spam = [e.subject for e, p in zip(test, predicted)
                    if p == "spam" and e.category not in ("spam", "automated")]
    assert wrongly_spam == [] and scores.extra["legit_as_spam"] == 0


def test_automated_mail_is_caught(heldout):
    test, _, predicted = heldout
    automated = [(e.subject, p) for e, p in zip(test, predicted) if e.category == "automated"]
    caught = sum(1 for _, p in automated if p == "automated")
    # Text-only notifications (a shop's order confirmation with no headers) are the hard case;
    # real ones also carry headers that the automated step reads. See docs/benchmarks.md.
    assert caught / len(automated) >= 0.9, automated


def test_messages_written_after_the_model_was_settled():
    """tests/fixtures/classify/unseen.jsonl: 36 messages (3 per category) written once the
    features and seed set were fixed and never used for training or tuning. Keep them out of
    the seed set, or this test stops meaning anything."""
    import json
    from pathlib import Path

    from intake.classify import Document

    path = Path(__file__).resolve().parent / "fixtures" / "classify" / "unseen.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    seed_texts = {normalized(e) for e in load_seed()}
    assert not any(normalized(Example(r["category"], r["subject"], r["body"], r["sender"])) in seed_texts
                   for r in rows)
    verdicts = Classifier(SETTINGS).classify_many(
        [Document(subject=r["subject"], body=r["body"], full_text=r["body"], sender_address=r["sender"])
         for r in rows])
    pairs = [(r["category"], v.category) for r, v in zip(rows, verdicts)]
    right = sum(1 for truth, predicted in pairs if truth == predicted)
    assert right >= 32, [p for p in pairs if p[0] != p[1]]
    assert not [p for p in pairs if p[1] == "spam" and p[0] not in ("spam", "automated")]
    assert all(predicted == "automated" for truth, predicted in pairs if truth == "automated")
