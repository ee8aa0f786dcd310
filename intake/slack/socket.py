"""``intake slack socket``: the same Bolt app over Socket Mode, for local use without a public URL.

``slack_bolt``'s ``SocketModeHandler`` (built on slack_sdk's built-in WebSocket client, no extra
dependency) opens the connection with the app-level token (``SLACK_APP_TOKEN``, ``xapp-…``) and
hands each envelope to the same ``App.dispatch`` the HTTP route uses.

Jobs go to the real queue (huey), exactly as from the web app: a listener only commits and hands
work on, so a slow job (a card waiting on Slack's pace, an SMTP server timing out) never holds a
Socket Mode listener. With the embedded SQLite queue this command also supervises a consumer
process, as ``intake serve`` does, so it is a working system on its own; with ``REDIS_URL`` the
jobs wait for ``intake worker``.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # pragma: no cover
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from intake.config import Settings
    from intake.runtime import Runtime

log = logging.getLogger(__name__)


def socket_runtime(settings: "Settings") -> "Runtime":
    """The composition root of Socket Mode: the configured database and the huey queue."""
    from intake.queue import make_queue
    from intake.runtime import Runtime

    return Runtime(settings, queue=make_queue(settings))


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
    from intake.serve import ConsumerSupervisor

    try:
        rt = socket_runtime(Settings.from_env().check())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    handler = build_socket_handler(rt)
    supervisor = None if rt.settings.redis_url else ConsumerSupervisor()
    if supervisor is None:
        click.echo("Jobs go to the Redis queue: run `intake worker` beside this.", err=True)
    else:
        supervisor.start()
    click.echo("Connecting to Slack over Socket Mode; press Ctrl-C to stop.", err=True)
    try:
        handler.start()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        handler.close()
        sys.exit(0)
    finally:
        if supervisor is not None:
            supervisor.stop()
