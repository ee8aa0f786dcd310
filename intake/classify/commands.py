"""The classifier's commands: `intake classify`, `intake train`, `intake eval`.

`classify` and `eval` need no database: they use the active stored model when the configured
database is there and has one, and the seed model otherwise. `train` needs the database, since
that is where staff labels come from and where the model goes.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Iterator

import click

from intake.classify.classifier import Classifier
from intake.classify.document import Document, Verdict
from intake.classify.language import detect_language
from intake.config import ConfigError, Settings

log = logging.getLogger(__name__)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _optional_database(settings: Settings):
    """The configured database if it exists and has the model table; None otherwise.

    A missing SQLite file is not created (running `intake classify` in some folder must not leave
    an empty intake.db behind).
    """
    from sqlalchemy import select

    from intake.db import Database
    from intake.models import ModelVersion

    url = settings.database_url
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1].split("?", 1)[0]
        if not path or path == ":memory:" or not Path(path).is_file():
            return None
    db = Database(url)
    try:
        with db.session() as session:
            session.execute(select(ModelVersion.id).limit(1)).all()
    except Exception as exc:
        log.info("no usable database for the classifier (%s); using the seed model",
                 exc.__class__.__name__)
        db.dispose()
        return None
    return db


def _iter_files(paths: tuple[str, ...]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not any(p.startswith(".") for p in child.relative_to(path).parts):
                    yield child
        elif path.is_file():
            yield path
        else:
            raise click.ClickException(f"{raw}: no such file or directory")


def _document(path: Path, max_attachment_bytes: int) -> Document:
    """Parse one message file; raises click.ClickException with a readable reason."""
    from intake.mail import parse
    from intake.mail.types import UnparseableMessage

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return Document.from_parsed(parse(raw, max_attachment_bytes=max_attachment_bytes))
    except (UnparseableMessage, ValueError) as exc:
        raise click.ClickException(f"{path}: not a parseable email message: {exc}") from None


def _line(path: Path, verdict: Verdict | None, language: str | None, error: str | None) -> dict:
    if verdict is None:
        return {"file": str(path), "category": None, "confidence": None, "automated": False,
                "language": None, "reasons": [f"error: {error}"]}
    return {"file": str(path), "category": verdict.category,
            "confidence": round(verdict.confidence, 4), "automated": verdict.automated,
            "language": language, "reasons": verdict.reasons}


@click.command("classify")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.argument("paths", nargs=-1, required=True)
def classify_command(as_json: bool, paths: tuple[str, ...]) -> None:
    """Classify raw RFC 822 messages (files or directories) without storing them."""
    settings = _settings()
    classifier = Classifier(settings, _optional_database(settings))
    failures = 0
    for path in _iter_files(paths):
        verdict, language, error = None, None, None
        try:
            doc = _document(path, settings.max_attachment_bytes)
            verdict = classifier.classify(doc)
            language = detect_language(doc.body or doc.subject, settings)
        except click.ClickException as exc:
            failures += 1
            error = exc.message
            click.echo(f"Error: {error}", err=True)
        line = _line(path, verdict, language, error)
        if as_json:
            click.echo(json.dumps(line, ensure_ascii=False))
        elif verdict is not None:
            flag = " automated" if verdict.automated else ""
            review = " needs-review" if verdict.needs_review else ""
            click.echo(f"{path}: {verdict.category} {verdict.confidence:.2f}{flag}{review} "
                       f"[{language or '?'}] {'; '.join(verdict.reasons)}")
    if failures:
        sys.exit(1)


@click.command("train")
@click.option("--force", is_flag=True, help="Store the new model even if it scores worse.")
@click.option("--margin", type=float, default=None,
              help="Largest macro-F1 drop accepted without --force ([classifier] train_margin, 0.02).")
def train_command(force: bool, margin: float | None) -> None:
    """Retrain from the seed set plus staff corrections and store the model as the active one."""
    from intake.classify.evaluate import format_report
    from sqlalchemy.exc import SQLAlchemyError

    from intake.classify.training import train
    from intake.jobs import InlineQueue
    from intake.runtime import Runtime

    if margin is not None and margin < 0:
        raise click.ClickException("--margin must be zero or more")
    settings = _settings()
    try:
        rt = Runtime(settings, queue=InlineQueue())  # training enqueues nothing
        result = train(rt, force=force, margin=margin)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except SQLAlchemyError as exc:
        raise click.ClickException(
            f"cannot use the database at DATABASE_URL ({exc.__class__.__name__}); "
            "is it running and migrated (`intake db upgrade`)?"
        ) from None
    click.echo(f"trained on {result.trained_on} examples ({result.staff_labels} staff labels), "
               f"held out {result.tested_on}")
    if result.scores is not None:
        click.echo(format_report(result.scores))
    if not result.stored:
        click.echo(result.message, err=True)
        sys.exit(1)
    click.echo(result.message)


@click.command("eval")
@click.argument("labels", metavar="LABELS.csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the confusion matrix as a heat map PNG (needs matplotlib).")
def eval_command(labels: Path, plot: Path | None) -> None:
    """Per-category precision, recall and F1 and a confusion matrix on labelled files.

    LABELS.csv has one row per message, `path,category`: the path of a raw message file,
    relative to the CSV's folder (or absolute), and the category it belongs to. A first row
    `path,category` (or `file,label`) is read as a header. For example:

    \b
        path,category
        inbox/2026-11-03-riverton.eml,partnership
        inbox/ooo-reply.eml,automated
    """
    from intake.classify.evaluate import EvalError, format_report, misclassified, plot_confusion, read_labels
    from intake.classify.training import score

    settings = _settings()
    try:
        files = read_labels(labels)
    except EvalError as exc:
        raise click.ClickException(str(exc)) from None
    unknown = sorted({f.label for f in files} - set(settings.category_names))
    if unknown:
        click.echo(f"warning: labels not in the taxonomy: {', '.join(unknown)}", err=True)
    classifier = Classifier(settings, _optional_database(settings))
    docs = [_document(f.path, settings.max_attachment_bytes) for f in files]
    predicted = [v.category for v in classifier.classify_many(docs)]
    scores = score([f.label for f in files], predicted)
    click.echo(format_report(scores))
    wrong = misclassified(files, predicted)
    if wrong:
        click.echo("")
        click.echo("misclassified:")
        for row in wrong:
            click.echo(f"  {row['file']}: {row['label']} -> {row['predicted']}")
    if plot is not None:
        try:
            plot_confusion(scores, plot)
        except EvalError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"confusion matrix written to {plot}")
