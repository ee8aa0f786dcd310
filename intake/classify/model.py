"""Step 3: the statistical model, and the seed set it starts from.

TF-IDF over words (what the message is about) and char_wb n-grams (robust to typos, inflections
and the Spanish/French/Portuguese mail in the seed set), plus cue-word tokens (`cues.py`), then a
LogisticRegression because staff need a probability to trust or review, which LinearSVC does
not give (see DESIGN.md for the measurements behind this choice).

The default model is fitted from the seed set shipped in ``intake/classify/seed/*.jsonl`` at first
use (2-3 s) and cached on disk keyed by the seed's hash, the taxonomy and the scikit-learn
version, so a changed seed file or an upgraded library rebuilds it instead of loading a stale
pickle. Pickled models refer to `message_part` by its module path: moving it makes stored
versions unloadable (they then fall back to the seed model, with a logged error).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import joblib
import numpy as np
import sklearn
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from intake.classify.automated import own_words
from intake.classify.cues import cue_tokens
from intake.classify.document import Document

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
# Bump whenever feature_text, the tokens or the pipeline change: cached and stored models made
# with other features are then refitted (cache) or refused and replaced by the seed model (DB).
FEATURES_VERSION = 2
# Long messages say what they are about early; the cap bounds the cost of char n-grams.
MAX_FEATURE_CHARS = 3000
FREE_MAIL = frozenset(
    "gmail.com googlemail.com yahoo.com yahoo.es yahoo.fr hotmail.com hotmail.fr outlook.com "
    "live.com icloud.com me.com aol.com proton.me protonmail.com gmx.de gmx.net web.de naver.com "
    "daum.net hanmail.net uol.com.br bol.com.br terra.com.br orange.fr free.fr laposte.net".split()
)
# Words too common to explain anything to staff (they still count in the model).
_NOT_REASONS = ENGLISH_STOP_WORDS | {"hi", "hello", "thanks", "thank", "dear", "regards", "best"}
_QUOTED_LINE = re.compile(r"^\s*>.*$", re.MULTILINE)


@dataclass(frozen=True)
class Example:
    """One labelled message: a seed line or a staff correction."""

    category: str
    subject: str
    body: str
    sender: str = ""
    origin: str = "seed"  # seed | staff

    def text(self) -> str:
        return feature_text(self.subject, self.body, self.sender)


# Look-alike domains of phishing: "paypal-account-verify.info", "g00gle-security-check.com".
_LURE_DOMAIN = re.compile(
    r"secure|verif|account|login|signin|alert|update|support-|-support|notice|portal|billing|"
    r"-online|prize|winner|lotter|promo|deals|bonus|refund|quota|[a-z]0[a-z]|[a-z]1[a-z]",
)


# Role mailboxes say what kind of sender wrote: press@, grants@, sales@, alerts@, receipts@.
_ROLE_MAILBOX = re.compile(
    r"^(?:alerts?|notifications?|notify|receipts?|reports?|orders?|billing|invoices?|service|"
    r"support|help|info|news|newsletter|marketing|sales|hello|hi|contact|team|press|media|"
    r"newsroom|events?|grants?|giving|donations?|partnerships?|programs?|jobs|careers|hr|"
    r"recruiting|talent|admin|office|webmaster|security|accounts?)$"
)


def sender_tokens(address: str) -> str:
    """A few words about the sender: the kind of domain says a lot (.gov, a newsroom, gmail)."""
    local, _, domain = address.lower().rpartition("@")
    if not domain:
        return ""
    local = local.split("+", 1)[0]
    role = f"senderrole{re.sub(r'[^a-z]', '', local)}" if _ROLE_MAILBOX.match(local) else "senderperson"
    if domain in FREE_MAIL:
        return f"senderfreemail {role}"
    labels = [l for l in re.split(r"[.\-]", domain) if l]
    tld = labels[-1] if labels else ""
    lure = " senderlure" if is_lure_sender(address) else ""
    return f"sendertld{tld} {role}{lure}"


def is_lure_sender(address: str) -> bool:
    domain = address.rpartition("@")[2].lower()
    if not domain or domain in FREE_MAIL:
        return False
    return bool(_LURE_DOMAIN.search(domain)) or domain.count("-") >= 2


# Words of two or more characters with at least one letter: dates and times ("2025", "00") said
# more about the seed's calendar notices than about anything a person asks.
WORD_TOKEN = r"(?u)\b(?=\w*[^\W\d_])\w\w+\b"

# Separates the message from the derived tokens (sender kind, cue words): the word n-grams see
# both, the character n-grams only the message.
META_MARK = "\x1e"


def feature_text(subject: str, body: str, sender: str = "") -> str:
    """What the model reads: the subject and the sender's own words (quoted and forwarded text
    cut off, unless nothing else is left), then the derived tokens."""
    own = own_words(body or "")
    body = own if len(own.strip()) >= 15 else _QUOTED_LINE.sub("", body or "")
    text = f"{subject or ''}\n{body}"[:MAX_FEATURE_CHARS]
    return f"{text}\n{META_MARK} {sender_tokens(sender or '')} {cue_tokens(text)}"


def message_part(text: str) -> str:
    """Preprocessor of the character n-grams (module level so that the model pickles)."""
    return text.partition(META_MARK)[0].lower()


def document_text(doc: Document) -> str:
    return feature_text(doc.subject, doc.body, doc.sender_address)


def build_pipeline(c: float = 10.0) -> Pipeline:
    """The settings measured best on the seed set (4-fold CV macro-F1, docs/benchmarks.md):
    word unigrams do as well as 1-2-grams at this data size, char_wb 1-4-grams capped at 30k
    features as well as 2-5-grams at a fraction of the size, and newton-cg converges in a
    handful of iterations where lbfgs needs dozens."""
    words = TfidfVectorizer(
        analyzer="word", ngram_range=(1, 1), sublinear_tf=True, lowercase=True,
        strip_accents="unicode", token_pattern=WORD_TOKEN,
    )
    chars = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True, min_df=2,
        preprocessor=message_part, max_features=30_000,
    )
    return Pipeline([
        ("features", FeatureUnion([("words", words), ("chars", chars)])),
        ("clf", LogisticRegression(C=c, max_iter=1000, class_weight="balanced", solver="newton-cg")),
    ])


@dataclass
class ModelBundle:
    """A fitted pipeline plus what is needed to explain and version it."""

    pipeline: Pipeline
    version: str
    classes: list[str]
    trained_on: int
    metrics: dict[str, Any] | None = None
    # Logits are multiplied by this before the softmax (temperature scaling, fitted on
    # out-of-fold predictions) so that "0.8" means right about 8 times in 10.
    temperature: float = 1.0

    @property
    def n_word_features(self) -> int:
        return len(self.pipeline.named_steps["features"].transformer_list[0][1].vocabulary_)

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, Any]:
        """Probabilities (rows: texts, columns: `classes`) and the feature matrix for reasons."""
        features = self.pipeline.named_steps["features"].transform(texts)
        logits = as_logits(self.pipeline.named_steps["clf"].decision_function(features))
        return softmax(logits * self.temperature), features

    def top_words(self, features_row: Any, class_index: int, limit: int = 3) -> list[str]:
        """The words of this message that pushed hardest towards the class: the "why" for staff."""
        n_words = self.n_word_features
        row = features_row.tocsr()
        cols = row.indices
        mask = cols < n_words
        cols, vals = cols[mask], row.data[mask]
        if cols.size == 0:
            return []
        all_coef = self.pipeline.named_steps["clf"].coef_
        # Two classes: one row of coefficients, pointing towards the second class.
        coef = all_coef[class_index] if all_coef.shape[0] > 1 else all_coef[0] * (1 if class_index else -1)
        contrib = vals * coef[cols]
        order = np.argsort(-contrib)
        names = self._word_names
        out: list[str] = []
        for i in order:
            if contrib[i] <= 0 or len(out) >= limit:
                break
            name = names[cols[i]]
            if name.startswith(("sender", "cue_")) or name in _NOT_REASONS:
                continue
            out.append(name)
        return out

    @cached_property
    def _word_names(self) -> np.ndarray:
        return self.pipeline.named_steps["features"].transformer_list[0][1].get_feature_names_out()

    def dumps(self) -> bytes:
        buffer = io.BytesIO()
        payload = {
            "format": BUNDLE_FORMAT,
            "features": FEATURES_VERSION,
            "sklearn": sklearn.__version__,
            "pipeline": self.pipeline,
            "version": self.version,
            "classes": self.classes,
            "trained_on": self.trained_on,
            "metrics": self.metrics,
            "temperature": self.temperature,
        }
        joblib.dump(payload, buffer, compress=3)
        return buffer.getvalue()

    @classmethod
    def loads(cls, blob: bytes) -> "ModelBundle":
        """Raises on anything that is not a bundle we wrote (the caller falls back to the seed)."""
        # joblib (pickle) is only ever read from our own database or cache, never from a user.
        payload = joblib.load(io.BytesIO(blob))
        if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
            raise ValueError("not an intake model bundle")
        if payload.get("features") != FEATURES_VERSION:
            raise ValueError(
                f"model uses features v{payload.get('features')}, this intake v{FEATURES_VERSION}: "
                "run `intake train` to rebuild it"
            )
        pipeline = payload["pipeline"]
        if not isinstance(pipeline, Pipeline):
            raise ValueError("model bundle holds no pipeline")
        return cls(
            pipeline=pipeline,
            version=str(payload["version"]),
            classes=[str(c) for c in payload["classes"]],
            trained_on=int(payload.get("trained_on", 0)),
            metrics=payload.get("metrics"),
            temperature=float(payload.get("temperature", 1.0)),
        )


def as_logits(decision: np.ndarray) -> np.ndarray:
    """One column per class; a two-class model gives one score z, i.e. logits (-z/2, z/2)."""
    decision = np.asarray(decision)
    if decision.ndim == 1:
        return np.column_stack([-decision / 2, decision / 2])
    return decision


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    """The logit scale that minimises the log loss of held-out predictions (a 1-D search)."""
    best, best_loss = 1.0, float("inf")
    for t in np.arange(0.5, 8.01, 0.1):
        p = softmax(logits * t)[np.arange(len(truth)), truth]
        loss = float(-np.log(np.clip(p, 1e-12, None)).mean())
        if loss < best_loss:
            best, best_loss = float(t), loss
    return round(best, 2)


def fit_bundle(examples: Sequence[Example], version: str, c: float = 10.0,
               temperature: float | None = None) -> ModelBundle:
    """Fit on the examples; without a given temperature, fit one on out-of-fold predictions
    (three more fits: a caller training several models on similar data passes the first's)."""
    texts = [e.text() for e in examples]
    labels = [e.category for e in examples]
    pipeline = build_pipeline(c)
    pipeline.fit(texts, labels)
    classes = [str(c) for c in pipeline.named_steps["clf"].classes_]
    if temperature is None:
        temperature = _out_of_fold_temperature(texts, labels, classes, c)
    return ModelBundle(pipeline=pipeline, version=version, classes=classes,
                       trained_on=len(examples), temperature=temperature)


def _out_of_fold_temperature(texts: list[str], labels: list[str], classes: list[str], c: float) -> float:
    """Temperature from 3-fold predictions; categories with fewer than 3 examples (a brand-new
    one with a couple of staff labels) are left out of this estimate."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    counts = {label: labels.count(label) for label in set(labels)}
    keep = [i for i, label in enumerate(labels) if counts[label] >= 3]
    kept_classes = sorted({labels[i] for i in keep})
    if len(kept_classes) < 2:
        return 1.0
    logits = cross_val_predict(
        build_pipeline(c), [texts[i] for i in keep], [labels[i] for i in keep],
        method="decision_function", cv=StratifiedKFold(3, shuffle=True, random_state=0),
    )
    truth = np.array([kept_classes.index(labels[i]) for i in keep])
    return fit_temperature(as_logits(logits), truth)


# --- the seed set -------------------------------------------------------------------------------

def _seed_files() -> list[Any]:
    folder = resources.files("intake.classify").joinpath("seed")
    return sorted((f for f in folder.iterdir() if f.name.endswith(".jsonl")), key=lambda f: f.name)


def taxonomy_labels(categories: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Seed label -> taxonomy name. An operator who renames a category keeps its seed examples
    by listing the old name: `[[categories]] name = "media"  aliases = ["press"]`."""
    labels: dict[str, str] = {}
    for table in categories:
        name = str(table.get("name", ""))
        if not name:
            continue
        labels.setdefault(name, name)
        for alias in table.get("aliases", []) or []:
            labels[str(alias)] = name
    return labels


def load_seed(categories: Mapping[str, str] | Iterable[str] | None = None) -> list[Example]:
    """Every seed example; given the taxonomy (names, or seed label -> name as from
    `taxonomy_labels`), only those it has a category for, under the taxonomy's names."""
    if categories is None:
        rename: Mapping[str, str] | None = None
    elif isinstance(categories, Mapping):
        rename = categories
    else:
        rename = {c: c for c in categories}
    examples: list[Example] = []
    for f in _seed_files():
        for lineno, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                example = Example(
                    category=str(row["category"]), subject=str(row.get("subject", "")),
                    body=str(row.get("body", "")), sender=str(row.get("sender", "")),
                )
            except (ValueError, KeyError) as exc:
                raise ValueError(f"seed file {f.name} line {lineno}: {exc}") from None
            if rename is None:
                examples.append(example)
            elif example.category in rename:
                examples.append(replace(example, category=rename[example.category]))
    return examples


def seed_hash() -> str:
    digest = hashlib.sha256()
    for f in _seed_files():
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def dedupe(examples: Iterable[Example]) -> list[Example]:
    """One example per distinct text, so that no text is in both the training and the test set.

    When the same text carries two labels (a staff correction of a seed-like message), the last
    one wins: corrections come after the seed.
    """
    by_text: dict[str, Example] = {}
    for e in examples:
        key = " ".join(e.text().lower().split())
        by_text.pop(key, None)
        by_text[key] = e
    return list(by_text.values())


_seed_lock = threading.Lock()
_seed_models: dict[tuple[str, ...], ModelBundle] = {}


def _cache_dir() -> Path:
    base = os.environ.get("INTAKE_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "intake" if base else Path.home() / ".cache" / "intake"


def seed_model(categories: Mapping[str, str] | Sequence[str]) -> ModelBundle:
    """The default model for this taxonomy: in memory, else the disk cache, else fitted now."""
    labels = dict(categories) if isinstance(categories, Mapping) else {c: c for c in categories}
    key = tuple(sorted(labels.items()))
    with _seed_lock:
        bundle = _seed_models.get(key)
        if bundle is not None:
            return bundle
        digest = hashlib.sha256((seed_hash() + "|" + repr(key)).encode()).hexdigest()
        version = f"seed-{digest[:10]}"
        path = _cache_dir() / f"{version}-f{FEATURES_VERSION}-sklearn{sklearn.__version__}.joblib"
        bundle = _load_cached(path)
        if bundle is None:
            examples = dedupe(load_seed(labels))
            # The one slow step of a first run (a newcomer's first `intake ingest`): say so
            # before it starts, and how long it took.
            log.info("fitting the classifier's seed model on %d examples (first run only; "
                     "it is cached in %s)...", len(examples), path.parent)
            started = time.monotonic()
            bundle = fit_bundle(examples, version)
            log.info("seed model fitted in %.1f s", time.monotonic() - started)
            _store_cached(path, bundle)
        _seed_models[key] = bundle
        return bundle


def _load_cached(path: Path) -> ModelBundle | None:
    try:
        return ModelBundle.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except Exception:  # a truncated or foreign cache file is rebuilt, not trusted
        log.warning("seed model cache %s unreadable; refitting", path)
        return None


def _store_cached(path: Path, bundle: ModelBundle) -> None:
    """Best effort (a read-only home is fine): written to a temp file and renamed, so a process
    reading at the same moment never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as tmp:
            tmp.write(bundle.dumps())
        os.replace(tmp.name, path)
    except OSError as exc:
        log.info("could not cache the seed model at %s: %s", path, exc)
