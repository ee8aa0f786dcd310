"""Typed settings sections: INTAKE_CONFIG's [slack], [outbound]..., [classifier] and [outbox]
parsed once over intake/defaults.toml, with a sentence naming the key when a value is wrong."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import tomllib
from pathlib import Path

import pytest

from intake.config import ConfigError, Settings

DEFAULTS = tomllib.loads((Path(__file__).resolve().parents[1] / "intake" / "defaults.toml").read_text())


def settings_from(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "intake.toml"
    path.write_text(text, encoding="utf-8")
    return Settings.from_env({"INTAKE_CONFIG": str(path)})


def test_the_defaults_file_is_what_a_fresh_install_runs_with():
    settings = Settings.from_env({}).check()
    slack, outbound, classifier = settings.slack, settings.outbound, settings.classifier
    assert slack.burst_window == dt.timedelta(minutes=DEFAULTS["slack"]["burst_minutes"])
    assert slack.post_interval_seconds == DEFAULTS["slack"]["post_interval_seconds"]
    assert (slack.timeout_seconds, slack.rate_limit_retries) == (
        DEFAULTS["slack"]["timeout_seconds"], DEFAULTS["slack"]["rate_limit_retries"])
    assert slack.channels == {} and slack.email_channels == frozenset() and slack.allowed_usergroup is None
    assert outbound.ack_categories == frozenset(DEFAULTS["acknowledgments"]["categories"])
    assert [(c.limit, c.seconds) for c in outbound.caps] == [
        (c["max"], c["minutes"] * 60) for c in DEFAULTS["outbound"]["caps"]]
    assert outbound.suggestion_min_score == DEFAULTS["knowledge"]["min_score"]
    assert outbound.answer_categories == frozenset() and outbound.ack_templates == {}
    assert classifier.spam_threshold == DEFAULTS["classifier"]["spam_threshold"]
    assert classifier.languages == tuple(sorted(DEFAULTS["classifier"]["languages"]))
    assert classifier.rules == ()


def test_an_operator_file_overrides_key_by_key(tmp_path):
    settings = settings_from(tmp_path, """
[slack]
burst_minutes = 3
channels = { press = "C0PRESS" }
email_channels = "C0MAIL"
email_channel = "C0OLD"
[outbound]
caps = [{ max = 2, minutes = 1.5 }]
[acknowledgments]
categories = ["press", "spam"]
per_sender_hours = 0.5
[classifier]
languages = ["EN", "es"]
rules = [{ category = "press", keywords = ["interview"] }]
""")
    slack = settings.slack
    assert slack.burst_window == dt.timedelta(minutes=3)
    assert slack.post_burst == DEFAULTS["slack"]["post_burst"]  # untouched keys keep their default
    assert slack.channel_for("press", "C0TRIAGE") == "C0PRESS"
    assert slack.channel_for("general", "C0TRIAGE") == "C0TRIAGE"
    assert slack.email_channels == {"C0MAIL", "C0OLD"}
    outbound = settings.outbound
    assert [(c.limit, c.seconds) for c in outbound.caps] == [(2, 90)]
    assert outbound.ack_categories == {"press"}  # spam is never acknowledged, whatever is written
    assert outbound.ack_per_sender_seconds == 1800
    assert settings.classifier.languages == ("en", "es")
    assert [r.keywords for r in settings.classifier.rules] == [("interview",)]


def test_a_hand_built_partial_table_still_has_every_default():
    """Tests (and embedders) replace whole tables; the missing keys come from defaults.toml."""
    settings = dataclasses.replace(Settings.from_env({}), toml={**Settings.from_env({}).toml,
                                                                 "acknowledgments": {"enabled": False}})
    assert settings.outbound.ack_enabled is False
    assert settings.outbound.ack_per_sender_seconds == DEFAULTS["acknowledgments"]["per_sender_hours"] * 3600


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ("[slack]\npost_burst = 0\n", "[slack] post_burst must be a whole number of 1 or more, got 0"),
        ("[slack]\nburst_minutes = \"ten\"\n", "[slack] burst_minutes must be a number of 0 or more"),
        ("[slack]\nchannels = { press = 5 }\n", "[slack] channels maps categories to channel ids"),
        ("[classifier]\nspam_threshold = -1\n", "[classifier] spam_threshold must be a number"),
        ("[classifier]\nlanguage_low_memory = \"yes\"\n", "[classifier] language_low_memory must be true or false"),
        ("[acknowledgments]\ncategories = \"application\"\n", "[acknowledgments] categories must be a list of strings"),
        ("[outbound]\ncaps = [{ max = \"x\", minutes = 1 }]\n", "[[outbound.caps]]: each entry needs `max` and `minutes`"),
        ("[knowledge]\nmin_score = true\n", "[knowledge] min_score must be a number"),
        ("[outbox]\nlease_seconds = \"long\"\n", "[outbox] lease_seconds must be a number of 0 or more"),
        ("slack = 3\n", "[slack] in INTAKE_CONFIG must be a table"),
    ],
)
def test_a_wrong_value_stops_the_start_with_a_sentence_naming_it(tmp_path, text, sentence):
    settings = settings_from(tmp_path, text)  # reading the file is not yet checking it
    with pytest.raises(ConfigError) as refused:
        settings.check()
    assert sentence in str(refused.value)


def test_long_running_processes_check_as_they_start(tmp_path, monkeypatch):
    import click

    from intake.app import create_app
    from intake.jobs import InlineQueue
    from intake.runtime import Runtime
    from intake.serve import _load_settings

    path = tmp_path / "bad.toml"
    path.write_text("[slack]\ntimeout_seconds = 0\n", encoding="utf-8")
    monkeypatch.setenv("INTAKE_CONFIG", str(path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(click.ClickException, match=r"\[slack\] timeout_seconds"):
        _load_settings()  # intake serve / intake worker
    settings = Settings.from_env()
    with pytest.raises(ConfigError, match=r"\[slack\] timeout_seconds"):
        create_app(rt=Runtime(settings, queue=InlineQueue()))


def test_keys_intake_does_not_read_are_logged_not_refused(tmp_path, caplog):
    settings = settings_from(tmp_path, "[slack]\nquiet_events = [\"ack_sent\"]\nburst_minute = 5\n")
    with caplog.at_level(logging.WARNING, logger="intake.config"):
        assert settings.slack.burst_window == dt.timedelta(minutes=DEFAULTS["slack"]["burst_minutes"])
    assert "burst_minute" in caplog.text and "quiet_events" in caplog.text
