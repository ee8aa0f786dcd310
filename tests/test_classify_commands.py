"""`intake classify`, `intake eval`: parsed files in, the DESIGN.md output shape out; the shared
corpus's bounces come out automated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from intake.classify import Classifier, Document
from intake.classify.commands import classify_command, eval_command, train_command
from intake.config import Settings
from intake.mail import parse
from tests.conftest import corpus_dir

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "classify"
MESSAGES = FIXTURES / "messages"
NO_DATABASE = {"DATABASE_URL": "sqlite:///does/not/exist/intake.db", "INTAKE_CONFIG": ""}


def cli() -> click.Group:
    group = click.Group("intake")
    for command in (classify_command, train_command, eval_command):
        group.add_command(command)
    return group


def test_classify_json_prints_one_object_per_file_with_the_design_keys():
    result = CliRunner().invoke(cli(), ["classify", "--json", str(MESSAGES)], env=NO_DATABASE)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert len(lines) == len(list(MESSAGES.glob("*.eml")))
    by_name = {Path(l["file"]).name: l for l in lines}
    for line in lines:
        assert list(line) == ["file", "category", "confidence", "automated", "language", "reasons"]
        assert isinstance(line["confidence"], float) and 0 <= line["confidence"] <= 1
        assert isinstance(line["reasons"], list) and all(isinstance(r, str) for r in line["reasons"])
    assert by_name["press_request_fr.eml"]["category"] == "press"
    assert by_name["press_request_fr.eml"]["language"] == "fr"
    assert by_name["ooo_subject_only.eml"]["language"] == "es"
    assert by_name["application_question.eml"]["automated"] is False
    for name in ("bounce_dsn.eml", "ooo_auto_submitted.eml", "ooo_subject_only.eml", "calendar_notice.eml"):
        assert by_name[name]["automated"] is True and by_name[name]["category"] == "automated", name
    assert by_name["spam_flagged.eml"]["category"] == "spam"
    # No database was created by looking for one.
    assert not Path("does/not/exist/intake.db").exists()


def test_classify_plain_output_and_unreadable_input(tmp_path):
    junk = tmp_path / "junk.eml"
    junk.write_bytes(b"\x00\x01\x02 not mail at all")
    result = CliRunner().invoke(
        cli(), ["classify", str(MESSAGES / "volunteer_reply.eml"), str(junk)], env=NO_DATABASE)
    assert result.exit_code == 1
    assert "volunteer_reply.eml: volunteer" in result.output
    assert "junk.eml" in result.output and "not a parseable email message" in result.output
    missing = CliRunner().invoke(cli(), ["classify", str(tmp_path / "nope.eml")], env=NO_DATABASE)
    assert missing.exit_code != 0 and "no such file or directory" in missing.output


def test_eval_prints_scores_and_a_confusion_matrix_and_draws_it(tmp_path):
    plot = tmp_path / "confusion.png"
    result = CliRunner().invoke(
        cli(), ["eval", str(FIXTURES / "labels.csv"), "--plot", str(plot)], env=NO_DATABASE)
    assert result.exit_code == 0, result.output
    assert "precision  recall" in result.output and "macro-F1" in result.output
    assert "confusion matrix" in result.output
    assert "automated        1.000   1.000  1.000        4" in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_reports_wrong_predictions_and_bad_label_files(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text(f"{MESSAGES / 'application_question.eml'},press\n", encoding="utf-8")
    result = CliRunner().invoke(cli(), ["eval", str(labels)], env=NO_DATABASE)
    assert result.exit_code == 0
    assert "application_question.eml: press -> application" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("only-one-column\n", encoding="utf-8")
    result = CliRunner().invoke(cli(), ["eval", str(bad)], env=NO_DATABASE)
    assert result.exit_code != 0 and "should be `path,category`" in result.output


@pytest.mark.parametrize("header", ["path,category", "file,label", "Path, Category"])
def test_eval_takes_a_header_row_and_paths_relative_to_the_csv(tmp_path, header):
    folder = tmp_path / "labelled"
    (folder / "inbox").mkdir(parents=True)
    for name in ("application_question.eml", "bounce_dsn.eml"):
        (folder / "inbox" / name).write_bytes((MESSAGES / name).read_bytes())
    labels = folder / "labels.csv"
    labels.write_text(f"{header}\ninbox/application_question.eml,application\ninbox/bounce_dsn.eml,automated\n",
                      encoding="utf-8")
    result = CliRunner().invoke(cli(), ["eval", str(labels)], env=NO_DATABASE)
    assert result.exit_code == 0, result.output
    assert "(2 messages)" in result.output  # the header was not read as a third
    assert "warning" not in result.output and "misclassified" not in result.output


def test_eval_help_documents_the_csv_format():
    result = CliRunner().invoke(cli(), ["eval", "--help"])
    assert "LABELS.csv" in result.output
    assert "path,category" in result.output and "relative to the CSV's folder" in result.output
    assert "file,label" in result.output  # the other header spelling


def test_confusion_matrix_columns_never_collide():
    """Cut to six characters, applicant_status and application were both "applic"."""
    from intake.classify.evaluate import format_report
    from intake.classify.training import score

    truth = ["application", "applicant_status", "applicant_status", "press", "application"]
    predicted = ["application", "application", "applicant_status", "press", "applicant_status"]
    report = format_report(score(truth, predicted))
    matrix = report.split("confusion matrix")[1].splitlines()[1:]
    header, rows = matrix[0].split(), matrix[1:]
    assert header == ["1", "2", "3"]
    assert len(set(header)) == len(header)
    labels = {row.split()[1]: [int(v) for v in row.split()[2:]] for row in rows}
    assert set(labels) == {"application", "applicant_status", "press"}
    order = [row.split()[1] for row in rows]
    column = {label: i for i, label in enumerate(order)}
    # Row "applicant_status": one predicted as application, one right.
    assert labels["applicant_status"][column["application"]] == 1
    assert labels["applicant_status"][column["applicant_status"]] == 1


def test_plot_without_matplotlib_names_the_package_and_this_python(tmp_path):
    """Run where matplotlib cannot be imported: the error names what to install, and where."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from tests.test_classify_commands import cli\n"
        f"cli()(['eval', {str(FIXTURES / 'labels.csv')!r}, '--plot', {str(tmp_path / 'x.png')!r}])\n"
    )
    env = {**os.environ, **NO_DATABASE}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode != 0
    assert f"{sys.executable} -m pip install matplotlib" in done.stderr
    assert "intake[" not in done.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.corpus
def test_corpus_bounces_and_dsns_come_out_automated():
    flanker = corpus_dir("flanker-messages")
    cpython = corpus_dir("cpython-email")
    files = sorted(flanker.glob("bounce_*.eml")) + [cpython / f"msg_{n}.txt" for n in (16, 25, 43)]
    assert len(files) >= 12
    classifier = Classifier(Settings.from_env({}))
    verdicts = classifier.classify_many([Document.from_parsed(parse(f.read_bytes())) for f in files])
    wrong = [(f.name, v.category) for f, v in zip(files, verdicts) if not (v.automated and v.category == "automated")]
    assert wrong == []
