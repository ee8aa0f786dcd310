"""The Bolt app: one ``App``, its listeners registered in one place, mounted on Flask.

``build_bolt_app`` is the composition root of the Slack side (the web app calls
``register_flask``, ``intake slack socket`` calls ``build_bolt_app``). Importing this module does
no work and opens no connection.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import Flask, jsonify, request
from slack_bolt import App

from intake.slack import actions, commands, events, forget, groups, home, mentions, shortcuts, views
from intake.slack.authz import authorizer
from intake.slack.client import listener_client
from intake.slack.common import SlackDeps

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


class _DropTokenSkippedWarning(logging.Filter):
    """Bolt falls back to ``$SLACK_BOT_TOKEN`` and then warns that the client's token wins; we
    build the client from that same variable on purpose, so the warning only confuses operators."""

    def filter(self, record: logging.LogRecord) -> bool:
        from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped

        return record.getMessage() != warning_client_prioritized_and_token_skipped()


_TOKEN_FILTER = _DropTokenSkippedWarning()


def register_listeners(app: App, deps: SlackDeps) -> None:
    """Every listener, in one place (bolt-python's starter-template layout)."""
    events.register(app, deps)  # first: its middleware drops Slack's event retries
    actions.register(app, deps)
    commands.register(app, deps)
    shortcuts.register(app, deps)
    views.register(app, deps)
    home.register(app, deps)
    groups.register(app, deps)  # issue 16: group cards
    mentions.register(app, deps)  # issue 16: @intake <query>
    forget.register(app, deps)  # "Forget this person" (intake.privacy)


def build_bolt_app(rt: "Runtime", *, process_before_response: bool = False,
                   socket_mode: bool = False) -> App | None:
    """The Bolt app, or None when Slack is not configured (the rest of intake runs without it).

    Over HTTP both the bot token and the signing secret are required; Socket Mode needs no
    signing secret (the WebSocket is authenticated by the app-level token instead).
    """
    settings = rt.settings
    if not settings.slack_bot_token:
        return None
    if not socket_mode and not settings.slack_signing_secret:
        return None
    client = listener_client(rt)
    bolt_logger = logging.getLogger("slack_bolt.App")
    if _TOKEN_FILTER not in bolt_logger.filters:
        bolt_logger.addFilter(_TOKEN_FILTER)
    app = App(
        client=client,  # carries the bot token; Bolt reads it from the client
        signing_secret=settings.slack_signing_secret or "",
        request_verification_enabled=not socket_mode,
        # auth.test is called on the first request instead of at import/boot, so the web
        # process starts even while Slack is unreachable.
        token_verification_enabled=False,
        process_before_response=process_before_response,
    )
    register_listeners(app, SlackDeps(rt, authorizer(rt, client)))
    return app


def register_flask(flask_app: Flask, rt: "Runtime", *, bolt_app: App | None = None) -> App | None:
    """Mount ``POST /slack/events`` (events, interactivity and slash commands on one URL).

    Without Slack credentials the route still exists and refuses every request, so the endpoint
    never runs open.
    """
    from slack_bolt.adapter.flask import SlackRequestHandler

    app = bolt_app or build_bolt_app(rt)
    if app is None:
        def slack_not_configured():
            return jsonify(error="Slack is not configured: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET"), 401

        flask_app.add_url_rule(EVENTS_PATH, "slack_events", slack_not_configured, methods=["POST"])
        return None
    handler = SlackRequestHandler(app)

    def slack_events():
        return handler.handle(request)

    flask_app.add_url_rule(EVENTS_PATH, "slack_events", slack_events, methods=["POST"])
    flask_app.extensions["slack_bolt"] = app
    return app
