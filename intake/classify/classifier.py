"""The classifier: automated mail, then operator rules, then the model, with spam held to a
higher standard than anything else.

One `Classifier` per process (`get_classifier(rt)`), holding the active model. Every worker must
see a model that `intake train` stored without being restarted, so the classifier looks up the
active `ModelVersion` id at most every `[classifier] reload_seconds` and loads the new blob when it
changed. A blob that cannot be loaded is logged and the seed model is used instead: a bad model
must not stop mail from being processed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from sqlalchemy import select

from intake.classify.automated import automated_reasons
from intake.classify.cues import spam_signs
from intake.classify.document import Document, Verdict
from intake.classify.model import (
    ModelBundle,
    document_text,
    is_lure_sender,
    seed_model,
    taxonomy_labels,
)
from intake.classify.rules import Rule, first_match
from intake.classify.spam import spam_evidence

if TYPE_CHECKING:  # pragma: no cover
    from intake.config import Settings
    from intake.db import Database
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

AUTOMATED = "automated"
SPAM = "spam"
GENERAL = "general"


class Classifier:
    def __init__(self, settings: "Settings", db: "Database | None" = None) -> None:
        self.settings = settings
        self.db = db
        self.categories: list[str] = list(settings.category_names)
        self.options = settings.classifier
        self.rules = settings.classifier.rules
        self._lock = threading.Lock()
        self._bundle: ModelBundle | None = None
        self._active_id: int | None = None  # the ModelVersion row in use (None: seed model)
        self._failed_ids: set[int] = set()
        self._checked_at = float("-inf")

    # --- which model ------------------------------------------------------------------------

    def model(self) -> ModelBundle:
        """The model to use now: the database's active version when there is one, else the seed."""
        with self._lock:
            now = time.monotonic()
            if self.db is not None and now - self._checked_at >= self.options.reload_seconds:
                self._checked_at = now
                self._refresh_from_db()
            if self._bundle is None:
                self._bundle = seed_model(taxonomy_labels(self.settings.categories))
            return self._bundle

    def _refresh_from_db(self) -> None:
        from intake.models import ModelVersion

        try:
            with self.db.read_session() as session:  # type: ignore[union-attr]
                active_id = session.scalar(
                    select(ModelVersion.id).where(ModelVersion.active.is_(True))
                    .order_by(ModelVersion.id.desc()).limit(1)
                )
                if active_id == self._active_id or active_id in self._failed_ids:
                    return
                if active_id is None:
                    self._active_id, self._bundle = None, None
                    return
                row = session.get(ModelVersion, active_id)
                blob, version = row.blob, row.version  # type: ignore[union-attr]
        except Exception:
            # The database being briefly away must not stop classification: keep what we have.
            log.warning("could not check the active model version; keeping the current model",
                        exc_info=True)
            return
        try:
            bundle = ModelBundle.loads(blob)
        except Exception:
            log.error("stored model %s (id %s) cannot be loaded; using the seed model instead",
                      version, active_id, exc_info=True)
            self._failed_ids.add(active_id)
            self._active_id, self._bundle = None, None
            return
        self._active_id, self._bundle = active_id, bundle
        log.info("classifier now uses model %s", bundle.version)

    # --- deciding ---------------------------------------------------------------------------

    def classify(self, doc: Document) -> Verdict:
        return self.classify_many([doc])[0]

    def classify_many(self, docs: Sequence[Document]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(docs)
        automated: dict[int, list[str]] = {}
        pending: list[int] = []
        for i, doc in enumerate(docs):
            reasons = automated_reasons(doc)
            if reasons:
                automated[i] = reasons
                if AUTOMATED in self.categories:
                    verdicts[i] = Verdict(AUTOMATED, 0.99, "automated", reasons[:4], None, False, True)
                    continue
            rule = first_match(self.rules, doc)
            if rule is not None:
                verdicts[i] = self._rule_verdict(rule, automated.get(i))
                continue
            pending.append(i)
        # Every verdict names the model version in force, also when a rule or the automated
        # step decided: "which model was live" is what an audit of a misfiled inquiry asks.
        bundle = self.model()
        for verdict in verdicts:
            if verdict is not None:
                verdict.model_version = bundle.version
        if pending:
            probs, features = bundle.predict([document_text(docs[i]) for i in pending])
            for row, i in enumerate(pending):
                verdict = self._model_verdict(bundle, probs[row], features[row], docs[i])
                if i in automated:  # certain, but the taxonomy has no "automated" category
                    verdict.automated = True
                    verdict.reasons = automated[i][:2] + verdict.reasons
                verdicts[i] = verdict
        return [v for v in verdicts if v is not None]

    def _rule_verdict(self, rule: Rule, automated: list[str] | None) -> Verdict:
        return Verdict(
            category=rule.category,
            confidence=rule.confidence,
            source="rule",
            reasons=[f"rule: {rule.reason}"] + (automated or [])[:2],
            needs_review=rule.confidence < self.options.review_threshold,
            automated=bool(automated) or rule.category == AUTOMATED,
        )

    def _model_verdict(self, bundle: ModelBundle, probs: np.ndarray, features: Any,
                       doc: Document) -> Verdict:
        scores = {c: float(p) for c, p in zip(bundle.classes, probs) if c in self.categories}
        total = sum(scores.values())
        if total <= 0:
            return Verdict(self._fallback(), 0.0, "model", ["model: no known category"],
                           bundle.version, True, False)
        scores = {c: p / total for c, p in scores.items()}  # removed categories' mass shared out
        evidence = spam_evidence(doc) if SPAM in scores else []
        if evidence:
            scores = _boost(scores, SPAM, self.options.provider_spam_odds)
        reasons = list(evidence)
        ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
        category, confidence = ranked[0]
        if category == SPAM:
            signs = self._spam_signs(doc, confidence)
            if confidence >= self.options.spam_threshold and (signs or evidence):
                reasons.extend(["spam signs: " + ", ".join(signs)] if signs else [])
            else:
                category, confidence = self._hand_to_a_person(ranked, scores, avoid=AUTOMATED)
                reasons.append(f"maybe spam ({ranked[0][1]:.2f}); left for a person to decide")
        elif category == AUTOMATED and confidence < self.options.automated_threshold:
            category, confidence = self._hand_to_a_person(ranked, scores, avoid=SPAM)
            reasons.append(f"maybe automated ({ranked[0][1]:.2f}); left for a person to decide")
        if category in bundle.classes:
            words = bundle.top_words(features, bundle.classes.index(category))
            if words:
                reasons.insert(0, "words: " + ", ".join(words))
        return Verdict(
            category=category,
            confidence=max(0.0, min(1.0, confidence)),
            source="model",
            reasons=reasons,
            model_version=bundle.version,
            needs_review=confidence < self.options.review_threshold,
            automated=category == AUTOMATED,
        )

    @staticmethod
    def _spam_signs(doc: Document, confidence: float) -> list[str]:
        """Something spam-like a person can check: cue words, a large sum, a look-alike domain."""
        signs = spam_signs(f"{doc.subject}\n{doc.body}", sure=confidence >= 0.9)
        if is_lure_sender(doc.sender_address):
            signs.append("look-alike sender domain")
        return signs

    def _hand_to_a_person(self, ranked: list[tuple[str, float]], scores: dict[str, float],
                          avoid: str) -> tuple[str, float]:
        """Not sure enough to bury the message in spam or automated: the runner-up (or general),
        with a confidence under the review threshold so that someone looks at it."""
        runner_up = ranked[1][0] if len(ranked) > 1 else self._fallback()
        category = runner_up if runner_up != avoid else self._fallback()
        return category, min(scores.get(category, 0.0), self.options.review_threshold - 0.01)

    def _fallback(self) -> str:
        """Where an unsure message goes: general, or the last non-special category."""
        if GENERAL in self.categories:
            return GENERAL
        ordinary = [c for c in self.categories if c not in (SPAM, AUTOMATED)]
        return (ordinary or self.categories)[-1]


def _boost(scores: dict[str, float], category: str, odds: float) -> dict[str, float]:
    """Multiply one category's odds, renormalising the rest (Bayes with a likelihood ratio)."""
    p = scores[category]
    boosted = p * odds / (p * odds + (1 - p)) if p < 1 else 1.0
    rest = 1 - p
    factor = (1 - boosted) / rest if rest > 0 else 0.0
    return {c: (boosted if c == category else v * factor) for c, v in scores.items()}


def get_classifier(rt: "Runtime") -> Classifier:
    """The process's classifier for this runtime, built on first use."""
    return rt.service("classifier", lambda rt: Classifier(rt.settings, rt.db))
