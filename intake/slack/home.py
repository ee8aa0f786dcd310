"""App Home: my inquiries, the unassigned queue (oldest first), counts by category and age.

Shown to members only (intake/slack/authz.py); anyone else gets the Home that says how to get access."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from intake.slack import blocks as B
from intake.slack import queries as Q
from intake.slack.authz import members_only, refuse_home
from intake.slack.common import SlackDeps


def publish_home(deps: SlackDeps, client: WebClient, user_id: str, query: str | None = None) -> None:
    """The Home tab for a member (listeners reach here through the members_only middleware)."""
    with deps.rt.db.session() as session:
        data = Q.home_data(session, user_id)
        if query and query.strip():
            data = Q.with_search(session, deps.rt.settings, data, query.strip())
    client.views_publish(user_id=user_id, view=B.home_view(data))


def register(app: App, deps: SlackDeps) -> None:
    members = [members_only(deps.authz, refuse_home)]

    @app.event("app_home_opened", middleware=members)
    def on_home_opened(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") == "home":
            publish_home(deps, client, event["user"])

    @app.action(B.A_HOME_REFRESH, middleware=members)
    def on_refresh(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        publish_home(deps, client, body["user"]["id"], _kept_query(body))

    @app.action(B.A_HOME_SEARCH, middleware=members)
    def on_search(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        publish_home(deps, client, body["user"]["id"], action.get("value") or "")


def _kept_query(body: dict[str, Any]) -> str | None:
    """The search shown before a refresh, kept in the Home view's private_metadata."""
    import json

    try:
        return json.loads((body.get("view") or {}).get("private_metadata") or "{}").get("query")
    except (ValueError, AttributeError):
        return None
