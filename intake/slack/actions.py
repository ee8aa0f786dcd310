"""Button and menu clicks on the triage card, the digest and the reply modal.

Every listener is registered behind the members-only middleware (intake/slack/authz.py), so it
runs for people who may act and no one else. It acknowledges first, then either opens a modal
(before any slow work: a trigger_id lives 3 seconds) or runs the domain action, whose event owes
the card update and the "who did what" line (intake/outbox/dispatch.py).

Buttons carry ``<inquiry id>:<card version>``: a second click on the same drawing of a card is
refused by the domain, so a double click or two people clicking at once act once.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

from slack_bolt import Ack, App
from slack_sdk import WebClient

from intake.slack import blocks as B
from intake.slack import queries as Q
from intake import inquiries
from intake.slack.authz import members_only, refuse_with_note
from intake.slack.common import ActionRefused, SlackDeps, int_or_none, run_action, tell

log = logging.getLogger(__name__)

# The folded-inquiry menu's verbs that act at once (the others open a modal).
FOLDED_ACTIONS: dict[str, Callable[..., Any]] = {
    "claim": inquiries.claim, "close": inquiries.close, "spam": inquiries.mark_spam,
}


def _target(action: dict[str, Any]) -> tuple[int | None, int | None]:
    """(inquiry id, card version) from a button's value ``12:3`` (or a plain ``12`` from cards
    drawn before versions); selects carry the id in their block_id (``card_menus:12``)."""
    value = action.get("value")
    if value is None:
        return int_or_none(str(action.get("block_id", "")).rpartition(":")[2]), None
    raw_id, _, raw_version = str(value).partition(":")
    version = int(raw_version) if raw_version.isdigit() else None
    return int_or_none(raw_id), version


def _inquiry_id(action: dict[str, Any]) -> int | None:
    return _target(action)[0]


def _user(body: dict[str, Any]) -> str:
    return (body.get("user") or {}).get("id", "")


def _do(deps: SlackDeps, client: WebClient, body: dict[str, Any], inquiry_id: int | None,
        action: Callable[..., Any], *args: Any, version: int | None = None) -> None:
    """Run the lifecycle ``action`` and tell the user if the domain refused."""
    user = _user(body)
    if inquiry_id is None:
        tell(client, body, "That button does not name an inquiry; nothing was changed.")
        return
    try:
        run_action(deps, inquiry_id, action, *args, actor=user, version=version)
    except ActionRefused as exc:
        tell(client, body, f"Could not do that on #{inquiry_id}: {exc}")


def simple_action(deps: SlackDeps, domain_action: Callable[..., Any]) -> Callable[..., None]:
    def listener(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        inquiry_id, version = _target(action)
        _do(deps, client, body, inquiry_id, domain_action, version=version)

    listener.__name__ = f"on_{domain_action.__name__}"
    return listener


def reply_view(deps: SlackDeps, inquiry_id: int, *, body: str | None = None,
               revision: int = 0, default_action: str = B.REPLY_SEND) -> dict[str, Any] | None:
    with deps.rt.db.session() as session:
        card = Q.card_data(session, inquiry_id, with_folded=False)
        choices = Q.recipient_choices(session, inquiry_id)
    if card is None:
        return None
    return B.reply_modal(
        recipients=choices,
        inquiry_id=inquiry_id, subject=card.subject,
        sender=B.sender_label(card.sender_name, card.sender_address) if card.sender_address else None,
        latest=card.latest_reply, templates=templates_for(deps, card.category), body=body,
        revision=revision, default_action=default_action,
    )


def templates_for(deps: SlackDeps, category: str | None) -> list[tuple[str, str]]:
    from intake.outbound import reply_templates

    return [(str(n), str(t)) for n, t in reply_templates(deps.rt.settings, category)]


def fill_template(template: str, inquiry_id: int, card: B.CardData | None) -> str:
    """Fill a saved reply's placeholders with the outbound layer's safe renderer."""
    from intake.outbound import render
    from intake.outbound.templates import first_name

    name = card.sender_name if card else None
    return render(template, {
        "first_name": first_name(name), "name": name or "", "subject": card.subject if card else "",
        "inquiry_id": str(inquiry_id), "reference": f"#{inquiry_id}",
    })


def suggestion_for(deps: SlackDeps, inquiry_id: int) -> B.SuggestionData | None:
    from intake.slack.deliveries import suggestion_for_card

    with deps.rt.db.read_session() as session:
        card = Q.card_data(session, inquiry_id, with_folded=False)
    if card is None:
        return None
    return suggestion_for_card(deps.rt, card.latest_reply or card.subject, card.category)


def open_modal(deps: SlackDeps, client: WebClient, body: dict[str, Any], inquiry_id: int | None,
               kind: str) -> None:
    if inquiry_id is None:
        return
    view: dict[str, Any] | None
    if kind == "reply":
        view = reply_view(deps, inquiry_id)
    elif kind == "note":
        with deps.rt.db.session() as session:
            card = Q.card_data(session, inquiry_id, with_folded=False)
        view = B.note_modal(inquiry_id=inquiry_id, subject=card.subject) if card else None
    elif kind == "full":
        with deps.rt.db.session() as session:
            card = Q.card_data(session, inquiry_id, with_folded=False)
            latest = Q.latest_inbound(session, inquiry_id)
            # The whole message as received (the card shows only the latest reply, without
            # the quoted history and signature).
            full = (latest.text_body or latest.latest_reply) if latest is not None else None
        view = B.full_text_modal(inquiry_id=inquiry_id, subject=card.subject,
                                 sender=B.sender_label(card.sender_name, card.sender_address),
                                 text=full) if card else None
    elif kind == "edit_suggestion":
        suggestion = suggestion_for(deps, inquiry_id)
        view = reply_view(deps, inquiry_id, body=suggestion.answer if suggestion else None)
    else:
        raise ValueError(kind)
    if view is None:
        tell(client, body, f"Inquiry #{inquiry_id} was not found.")
        return
    client.views_open(trigger_id=body["trigger_id"], view=view)


def modal_action(deps: SlackDeps, kind: str) -> Callable[..., None]:
    def listener(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        open_modal(deps, client, body, _inquiry_id(action), kind)

    listener.__name__ = f"on_open_{kind}"
    return listener


def send_reply(deps: SlackDeps, inquiry_id: int, text: str, author: str, *, version: int | None = None,
               to_address: str | None = None) -> int:
    """Queue an email reply; its event owes the sending and the card update. Returns the
    outbound message id.

    ``to_address``: the recipient picked in the reply modal (the outbound layer accepts only
    one of the inquiry's own addresses); None for the conversation's address."""
    from intake.outbound import OutboundConfigError, send_reply as queue_and_owe

    try:
        return int(queue_and_owe(deps.rt, inquiry_id, text, author, version=version, to_address=to_address))
    except (LookupError, ValueError, OutboundConfigError) as exc:
        raise ActionRefused(str(exc)) from exc


def register(app: App, deps: SlackDeps) -> None:
    members = [members_only(deps.authz, refuse_with_note)]
    for action_id, domain_action in (
        (B.A_CLAIM, inquiries.claim),
        (B.A_CLOSE, inquiries.close),
        (B.A_REOPEN, inquiries.reopen),
        (B.A_SPAM, inquiries.mark_spam),
        (B.A_NOT_SPAM, inquiries.mark_not_spam),
        (B.A_WAITING, inquiries.wait_on_applicant),
    ):
        app.action(action_id, middleware=members)(simple_action(deps, domain_action))
    app.action(B.A_REPLY, middleware=members)(modal_action(deps, "reply"))
    app.action(B.A_NOTE, middleware=members)(modal_action(deps, "note"))
    app.action(B.A_FULL_TEXT, middleware=members)(modal_action(deps, "full"))
    app.action(B.A_SUGGEST_EDIT, middleware=members)(modal_action(deps, "edit_suggestion"))

    @app.action(B.A_ASSIGN, middleware=members)
    def on_assign(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        assignee = action.get("selected_user")
        if not assignee:
            return
        _do(deps, client, body, _inquiry_id(action), inquiries.assign, assignee)

    @app.action(B.A_RECLASSIFY, middleware=members)
    def on_reclassify(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        category = (action.get("selected_option") or {}).get("value")
        if category not in deps.rt.settings.category_names:
            tell(client, body, "That category is not in the taxonomy; nothing was changed.")
            return
        _do(deps, client, body, _inquiry_id(action), inquiries.reclassify, category)

    @app.action(B.A_SUGGEST_SEND, middleware=members)
    def on_suggest_send(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        user, (inquiry_id, version) = _user(body), _target(action)
        if inquiry_id is None:
            return
        suggestion = suggestion_for(deps, inquiry_id)
        if suggestion is None:
            tell(client, body, f"No suggested answer for #{inquiry_id} any more; nothing was sent.")
            return
        try:
            send_reply(deps, inquiry_id, suggestion.answer, user, version=version)
        except ActionRefused as exc:
            tell(client, body, f"Could not send on #{inquiry_id}: {exc}")

    @app.action(B.A_FOLDED, middleware=members)
    def on_folded(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        verb, _, raw_id = str((action.get("selected_option") or {}).get("value", "")).partition(":")
        inquiry_id = int_or_none(raw_id)
        if verb in ("reply", "full"):
            open_modal(deps, client, body, inquiry_id, verb)
        elif verb in FOLDED_ACTIONS:
            _do(deps, client, body, inquiry_id, FOLDED_ACTIONS[verb])

    @app.action(B.A_DIGEST_REVIEW, middleware=members)
    def on_digest_review(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        after, _, through = str(action.get("value", "0:0")).partition(":")
        after_id, through_id = int_or_none(after) or 0, int_or_none(through) or 0
        with deps.rt.db.session() as session:
            rows = Q.rows_for(Q.filtered_since(session, after_id, through_id))
        client.views_open(trigger_id=body["trigger_id"],
                          view=B.digest_review_modal(rows, after_id=after_id, through_id=through_id))

    @app.action(B.A_DIGEST_RESTORE, middleware=members)
    def on_digest_restore(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        inquiry_id = _inquiry_id(action)
        _do(deps, client, body, inquiry_id, inquiries.mark_not_spam)
        view = body.get("view") or {}
        meta = json.loads(view.get("private_metadata") or "{}")
        after_id, through_id = int(meta.get("after_id", 0)), int(meta.get("through_id", 0))
        with deps.rt.db.session() as session:
            rows = Q.rows_for(Q.filtered_since(session, after_id, through_id))
        if view.get("id"):
            client.views_update(view_id=view["id"], hash=view.get("hash"),
                                view=B.digest_review_modal(rows, after_id=after_id, through_id=through_id))

    @app.action(B.A_REPLY_TEMPLATE, middleware=members)
    def on_template(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Fill the reply text with a saved reply, keeping the chosen outcome."""
        ack()
        view = body.get("view") or {}
        meta = json.loads(view.get("private_metadata") or "{}")
        inquiry_id = int_or_none(meta.get("inquiry_id"))
        raw_index = str((action.get("selected_option") or {}).get("value", ""))
        if inquiry_id is None or not raw_index.isdigit():
            return
        index = int(raw_index) + 1
        with deps.rt.db.session() as session:
            card = Q.card_data(session, inquiry_id, with_folded=False)
        templates = templates_for(deps, card.category if card else None)
        if index - 1 >= len(templates):
            return
        mode = (((view.get("state") or {}).get("values") or {}).get("mode") or {}).get("value") or {}
        chosen = (mode.get("selected_option") or {}).get("value") or B.REPLY_SEND
        new_view = reply_view(deps, inquiry_id, body=fill_template(templates[index - 1][1], inquiry_id, card),
                              revision=int(meta.get("revision", 0)) + 1, default_action=chosen)
        if new_view is not None and view.get("id"):
            client.views_update(view_id=view["id"], hash=view.get("hash"), view=new_view)
