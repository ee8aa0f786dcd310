"""`intake classify`, `intake eval`: parsed files in, the DESIGN.md output shape out; the shared
corpus's bounces come out automated."""

from __future__ import annotations

import json
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
    assert result.exit_code != 0 and "file,label" in result.output


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
