"""The classifier: taxonomy, rules, model, training, evaluation and language detection.

    get_classifier(rt).classify(Document.from_parsed(parsed, meta)) -> Verdict
    detect_language(text, settings) -> "en" | "es" | ... | None
    record_staff_label(session, inquiry_id, category, actor) -> Classification

Commands (attached to the `intake` group by intake/cli.py): classify_command, train_command,
eval_command in `intake.classify.commands`.
"""

from intake.classify.classifier import Classifier, get_classifier
from intake.classify.document import Document, Verdict
from intake.classify.language import detect_language
from intake.classify.training import record_staff_label, train

__all__ = [
    "Classifier",
    "Document",
    "Verdict",
    "detect_language",
    "get_classifier",
    "record_staff_label",
    "train",
]
