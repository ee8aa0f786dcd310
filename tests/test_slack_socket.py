"""`intake slack socket`: the Socket Mode handler is wired to the same Bolt app (never connected)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from slack_bolt.request import BoltRequest

from intake.config import Settings
from intake.db import Database
from intake.models import Inquiry
from intake.runtime import Runtime
from intake.slack import blocks as B
from intake.slack.socket import build_socket_handler, slack_command
from tests.fakeslack import (  # noqa: F401  (fixtures)
    RecordingQueue,
    button_payload,
    fake_slack,
    make_inquiry,
    slack_config,
    slack_env,
)


def test_socket_handler_wraps_our_app_and_dispatches_to_our_listeners(fake_slack, db_url, slack_config):
    env = slack_env(fake_slack, db_url, slack_config, SLACK_APP_TOKEN="xapp-1-A111-fake")
    del env["SLACK_SIGNING_SECRET"]  # Socket Mode needs none
    settings = Settings.from_env(env)
    rt = Runtime(settings, Database.from_settings(settings), queue=RecordingQueue())
    handler = build_socket_handler(rt)
    try:
        assert handler.client.app_token == "xapp-1-A111-fake"
        assert handler.client.web_client is handler.app.client  # same client, same base URL
        assert handler.app.client.base_url == fake_slack.api_url
        assert not handler.client.is_connected()
        # An envelope from the socket goes through the same App.dispatch as HTTP (no signature).
        inquiry_id = make_inquiry(rt)
        request = BoltRequest(body=button_payload(B.A_CLAIM, str(inquiry_id)), mode="socket_mode")
        response = handler.app.dispatch(request)
        assert response.status == 200
        fake_slack.wait_for("chat.postMessage", 2, timeout=10)  # card and thread line, after the ack
        with rt.db.session() as session:
            assert session.get(Inquiry, inquiry_id).assignee == "U100"
    finally:
        handler.close()
        rt.db.dispose()


def test_socket_mode_hands_jobs_to_the_huey_queue_not_to_the_listener(fake_slack, db_url, slack_config, tmp_path):
    """A listener only commits and hands work on: the card and the thread line wait on the queue
    (as from the web app) until a consumer runs them, so a slow job never holds the socket."""
    import time

    from intake.queue import HueyQueue
    from intake.slack.socket import socket_runtime

    env = slack_env(fake_slack, db_url, slack_config, SLACK_APP_TOKEN="xapp-1-A111-fake",
                    INTAKE_QUEUE_PATH=str(tmp_path / "queue.db"))
    rt = socket_runtime(Settings.from_env(env))
    assert isinstance(rt.queue, HueyQueue) and rt.queue.is_embedded
    handler = build_socket_handler(rt)
    huey = rt.queue.huey
    try:
        inquiry_id = make_inquiry(rt)
        request = BoltRequest(body=button_payload(B.A_CLAIM, str(inquiry_id)), mode="socket_mode")
        assert handler.app.dispatch(request).status == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the listener runs after the ack, in Bolt's thread pool
            with rt.db.session() as session:
                if session.get(Inquiry, inquiry_id).assignee == "U100":
                    break
            time.sleep(0.05)
        time.sleep(0.2)  # the kick follows the commit
        assert huey.pending_count() >= 1
        assert fake_slack.calls_to("chat.postMessage") == []  # nothing ran in the listener
        while (task := huey.dequeue()) is not None:  # what a consumer does
            huey.execute(task)
        assert len(fake_slack.calls_to("chat.postMessage")) == 2  # the card and the thread line
    finally:
        handler.close()
        rt.db.dispose()


def test_socket_command_says_what_to_set(db_url, monkeypatch):
    for name in ("SLACK_APP_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", db_url)
    result = CliRunner().invoke(slack_command, ["socket"])
    assert result.exit_code != 0
    assert "SLACK_APP_TOKEN is not set" in result.output
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-fake")
    result = CliRunner().invoke(slack_command, ["socket"])
    assert result.exit_code != 0 and "SLACK_BOT_TOKEN is not set" in result.output


def test_intake_cli_has_the_slack_socket_command():
    from intake.cli import main

    result = CliRunner().invoke(main, ["slack", "--help"])
    assert result.exit_code == 0 and "socket" in result.output
    assert json.dumps(sorted(slack_command.commands)) == '["socket"]'
