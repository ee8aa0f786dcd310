"""`intake eval`: score the classifier on labelled message files and show where it goes wrong."""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from intake.classify.training import Scores


class EvalError(Exception):
    """The labels file or a message it names cannot be used; the text says which and why."""


@dataclass(frozen=True)
class LabelledFile:
    path: Path
    label: str
    name: str  # as written in the CSV


# The format `intake eval --help` and the README describe: two columns, a message file and its
# category, one row per message; paths relative to the CSV's folder; a first row naming the
# columns (either spelling) is a header, not data.
CSV_FORMAT = "path,category"
HEADERS = (["path", "category"], ["file", "label"])


def read_labels(csv_path: Path) -> list[LabelledFile]:
    """Rows `path,category` (a header row `path,category` or `file,label` is optional), paths
    relative to the CSV."""
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise EvalError(f"cannot read {csv_path}: {exc.strerror or exc}") from None
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] in HEADERS:
        rows = rows[1:]
    out: list[LabelledFile] = []
    for lineno, row in enumerate(rows, 1):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise EvalError(f"{csv_path}: row {lineno} should be `{CSV_FORMAT}`, got {row!r}")
        path = (csv_path.parent / row[0].strip()).resolve()
        out.append(LabelledFile(path, row[1].strip(), row[0].strip()))
    if not out:
        raise EvalError(f"{csv_path} has no `{CSV_FORMAT}` rows")
    return out


def format_report(scores: Scores) -> str:
    width = max([len(l) for l in scores.labels] + [8])
    lines = [f"{'category':<{width}}  precision  recall     f1  support"]
    for label in scores.labels:
        m = scores.per_category[label]
        lines.append(f"{label:<{width}}  {m['precision']:9.3f}  {m['recall']:6.3f}  {m['f1']:5.3f}  {m['support']:7d}")
    lines.append(f"{'macro-F1':<{width}}  {scores.macro_f1:.3f}   ({scores.n} messages)")
    lines.append("")
    lines.append("confusion matrix (rows: label, columns: predicted, numbered as the rows)")
    # Numbers, not cut names, head the columns: cut names collide (applicant_status and
    # application both begin "applic") and full ones make the table too wide to read.
    number = len(str(len(scores.labels)))
    cell = max(number, *(len(str(v)) for row in scores.confusion for v in row), 3)
    lines.append(" " * (number + 1 + width + 2)
                 + " ".join(f"{i:>{cell}}" for i in range(1, len(scores.labels) + 1)))
    for i, (label, row) in enumerate(zip(scores.labels, scores.confusion), 1):
        lines.append(f"{i:>{number}} {label:<{width}}  " + " ".join(f"{v:>{cell}d}" for v in row))
    return "\n".join(lines)


def plot_confusion(scores: Scores, out: Path) -> None:
    """A heat map PNG. matplotlib is a test/extra dependency: imported here, only when asked."""
    # The one import guard kept on purpose: matplotlib is a third-party extra a plain
    # `pip install intake` does not bring, and `--plot` is the only thing that needs it.
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on servers
        import matplotlib.pyplot as plt
    except ImportError:  # optional: only --plot needs it
        raise EvalError(
            "--plot needs matplotlib, which is not installed in this environment; install it "
            f"with: {sys.executable} -m pip install matplotlib"
        ) from None
    labels: Sequence[str] = scores.labels
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        image = ax.imshow(scores.confusion, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels=labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels=labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("label")
        ax.set_title(f"intake classifier, macro-F1 {scores.macro_f1:.3f}")
        peak = max((max(r) for r in scores.confusion), default=0) or 1
        for i, row in enumerate(scores.confusion):
            for j, value in enumerate(row):
                if value:
                    ax.text(j, i, str(value), ha="center", va="center",
                            color="white" if value > peak / 2 else "black")
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        fig.savefig(out, dpi=100)
    except OSError as exc:
        raise EvalError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def misclassified(files: Sequence[LabelledFile], predicted: Sequence[str]) -> list[dict[str, Any]]:
    return [{"file": f.name, "label": f.label, "predicted": p}
            for f, p in zip(files, predicted) if f.label != p]
