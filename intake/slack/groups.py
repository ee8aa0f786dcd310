"""Listeners for group cards: Answer all (button, then modal) and Split out of this group.

Thin, like the others: acknowledge, check the user may act, call the domain
(``intake.grouping``) in one short transaction; what that owes (emails, cards) commits with it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from intake.grouping import answer, store
from intake.models import InquiryGroup
from intake.slack import group_blocks as G
from intake.slack.authz import members_only, refuse_in_modal, refuse_with_note
from intake.slack.common import ActionRefused, SlackDeps, int_or_none, run_action, tell
from intake.slack.deliveries import suggestion_for_card

log = logging.getLogger(__name__)


def _user(body: dict[str, Any]) -> str:
    return (body.get("user") or {}).get("id", "")


def answer_view(deps: SlackDeps, group_id: int) -> dict[str, Any] | None:
    """The Answer all modal, pre-filled with the knowledge base's answer when one fits."""
    with deps.rt.db.session() as session:
        group = session.get(InquiryGroup, group_id)
        view = store.groups(session, ids=[group_id])
        if group is None or not view:
            return None
        label, category, count = group.label, group.category, view[0].size
    suggestion = suggestion_for_card(deps.rt, label, category)
    return G.answer_all_modal(group_id=group_id, label=label, count=count,
                              body=suggestion.answer if suggestion else None,
                              suggestion_title=suggestion.title if suggestion else None)


def send_answer(deps: SlackDeps, group_id: int, text: str, author: str, request_key: str) -> answer.GroupAnswer:
    """Queue the replies in one transaction; the emails and card updates they owe commit with
    them and the outbox delivers them."""
    rt = deps.rt
    with rt.db.session() as session:
        return answer.answer_group(session, group_id, text, author, request_key=request_key, settings=rt.settings)


def register(app: App, deps: SlackDeps) -> None:
    members = [members_only(deps.authz, refuse_with_note)]

    @app.action(G.A_GROUP_ANSWER, middleware=members)
    def on_answer_all(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        group_id = int_or_none(action.get("value"))
        view = answer_view(deps, group_id) if group_id else None
        if view is None:
            tell(client, body, "That group no longer exists: its inquiries were answered, closed or split.")
            return
        client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.view(G.V_GROUP_ANSWER, middleware=[members_only(deps.authz, refuse_in_modal("body"))])
    def on_answer_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        user = _user(body)
        text = ((((view.get("state") or {}).get("values") or {}).get("body") or {}).get("value") or {}).get("value") or ""
        try:
            group_id = int_or_none(json.loads(view.get("private_metadata") or "{}").get("group_id"))
        except (ValueError, AttributeError):
            group_id = None
        if not text.strip():
            ack(response_action="errors", errors={"body": "Write the answer first."})
            return
        if group_id is None:
            ack(response_action="errors", errors={"body": "This form does not name a group."})
            return
        try:
            # The view's id names this one submission: sending it twice queues nothing new.
            result = send_answer(deps, group_id, text.strip(), user, request_key=str(view.get("id") or ""))
        except answer.GroupGone as exc:
            ack(response_action="errors", errors={"body": str(exc)[:150]})
            return
        ack()
        note = f"Answer queued for {len(result.queued)} people in group {group_id}."
        if result.refused:
            note += " Not sent: " + "; ".join(f"#{i} ({why})" for i, why in result.refused[:10])
        tell(client, body, note)

    @app.action(G.A_GROUP_MEMBER, middleware=members)
    def on_member_menu(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        verb, _, rest = str((action.get("selected_option") or {}).get("value", "")).partition(":")
        group_raw, _, inquiry_raw = rest.partition(":")
        group_id, inquiry_id = int_or_none(group_raw), int_or_none(inquiry_raw)
        if verb != "split" or group_id is None or inquiry_id is None:
            return
        try:
            run_action(deps, inquiry_id, store.split, actor=_user(body))
        except ActionRefused as exc:
            tell(client, body, f"Could not split #{inquiry_id}: {exc}")
