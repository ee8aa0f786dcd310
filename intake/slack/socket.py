"""``intake slack socket``: the same Bolt app over Socket Mode, for local use without a public URL.

``slack_bolt``'s ``SocketModeHandler`` (built on slack_sdk's built-in WebSocket client, no extra
dependency) opens the connection with the app-level token (``SLACK_APP_TOKEN``, ``xapp-…``) and
hands each envelope to the same ``App.dispatch`` the HTTP route uses.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # pragma: no cover
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from intake.runtime import Runtime


def build_socket_handler(rt: "Runtime") -> "SocketModeHandler":
    """The handler wired to our App; raises ``click.ClickException`` with what to set."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from intake.slack.app import build_bolt_app

    settings = rt.settings
    if not settings.slack_app_token:
        raise click.ClickException("SLACK_APP_TOKEN is not set: create an app-level token with the "
                                   "connections:write scope and export it (it starts with xapp-)")
    app = build_bolt_app(rt, socket_mode=True)
    if app is None:
        raise click.ClickException("SLACK_BOT_TOKEN is not set: copy the Bot User OAuth Token "
                                   "(xoxb-...) from your Slack app's OAuth & Permissions page")
    return SocketModeHandler(app, app_token=settings.slack_app_token)


@click.group("slack")
def slack_command() -> None:
    """Slack commands."""


@slack_command.command("socket")
def socket_command() -> None:
    """Run the Slack app over Socket Mode (local use, no public URL)."""
    from intake.config import ConfigError, Settings
    from intake.runtime import Runtime

    try:
        rt = Runtime(Settings.from_env())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    handler = build_socket_handler(rt)
    click.echo("Connecting to Slack over Socket Mode; press Ctrl-C to stop.", err=True)
    try:
        handler.start()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        handler.close()
        sys.exit(0)
