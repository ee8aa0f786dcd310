"""The "Forget this person" message shortcut on a triage card, and its confirmation modal.

Only members of ``[privacy] admin_usergroup`` may use it (asked of Slack with
``usergroups.users.list``, cached like the triage check; unset means nobody): erasing a person is
not an everyday triage action. The shortcut opens a modal saying who and what would go; the
submission checks again, then runs the same erasure as ``intake forget`` and updates the modal
with the result. The modal carries the inquiry id and a keyed hash of the address, so the person
erased is the one the admin confirmed.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.keys import secret_key
from intake.models import Inquiry
from intake.privacy import actions, config, erasure, run
from intake.slack import blocks as B
from intake.slack.authz import Authorizer
from intake.slack.common import SlackDeps

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

FORGET_CALLBACK = "forget_person"


def admins(rt: "Runtime", client: WebClient) -> Authorizer:
    """Members of the privacy admin group (the triage channel's members are not enough)."""
    ttl = rt.settings.slack.membership_ttl_seconds
    return rt.service("slack.privacy_admins",
                      lambda r: Authorizer(client, None, config.load(r).admin_usergroup, ttl))


def inquiry_for_message(session: Session, channel: str | None, ts: str | None, thread_ts: str | None) -> Inquiry | None:
    """The inquiry whose card is this message, or in whose card's thread it is."""
    for candidate in (ts, thread_ts):
        if channel and candidate:
            found = session.scalar(
                select(Inquiry).where(Inquiry.slack_channel == channel, Inquiry.slack_ts == candidate)
                .order_by(Inquiry.id).limit(1)
            )
            if found is not None:
                return found
    return None


def _user(body: dict[str, Any]) -> str:
    return (body.get("user") or {}).get("id", "")


def _address_of(inquiry: Inquiry) -> str | None:
    return inquiry.contact.address if inquiry.contact is not None else None


def register(app: App, deps: SlackDeps) -> None:
    rt = deps.rt

    @app.message_shortcut(FORGET_CALLBACK)
    def on_forget(ack: Ack, body: dict[str, Any], shortcut: dict[str, Any], client: WebClient) -> None:
        ack()
        trigger = body["trigger_id"]
        if not admins(rt, client).is_allowed(_user(body)):
            client.views_open(trigger_id=trigger, view=B.notice_modal("Not allowed", B.FORGET_REFUSAL))
            return
        message = shortcut.get("message") or {}
        channel = (shortcut.get("channel") or {}).get("id")
        with rt.db.read_session() as session:
            inquiry = inquiry_for_message(session, channel, message.get("ts"), message.get("thread_ts"))
            inquiry_id = inquiry.id if inquiry is not None else None
            address = _address_of(inquiry) if inquiry is not None else None
            preview = actions.preview_forget(session, address, with_mentions=False) if address else None
        if inquiry_id is None:
            client.views_open(trigger_id=trigger, view=B.notice_modal(
                "Forget this person", "This message is not an inquiry's card: use the shortcut on a card."))
            return
        if preview is None:
            client.views_open(trigger_id=trigger, view=B.notice_modal(
                "Forget this person", f"Inquiry #{inquiry_id} has no sender address. To remove it, "
                                      f"run `intake delete {inquiry_id}`."))
            return
        meta = json.dumps({"inquiry_id": inquiry_id,
                           "address_hmac": erasure.address_hash(secret_key(rt.db), preview.address)})
        client.views_open(trigger_id=trigger, view=B.forget_modal(B.ForgetPreviewData(
            inquiry_id=inquiry_id, address=preview.address, inquiries=[i["id"] for i in preview.inquiries],
            messages=preview.messages, attachments=preview.attachments,
            messages_elsewhere=preview.messages_elsewhere,
        ), meta))

    @app.view(B.V_FORGET)
    def on_confirm(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        user = _user(body)
        if not admins(rt, client).is_allowed(user):
            ack(response_action="update", view=B.notice_modal("Not allowed", B.FORGET_REFUSAL))
            return
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            inquiry_id = int(meta["inquiry_id"])
        except (ValueError, KeyError, TypeError):
            ack(response_action="update", view=B.notice_modal("Forget this person", "This form is damaged; nothing was erased."))
            return
        with rt.db.read_session() as session:
            inquiry = session.get(Inquiry, inquiry_id)
            address = _address_of(inquiry) if inquiry is not None else None
        key = secret_key(rt.db)
        if address is None or erasure.address_hash(key, address) != meta.get("address_hmac"):
            ack(response_action="update", view=B.notice_modal(
                "Forget this person", f"Inquiry #{inquiry_id} was erased or changed meanwhile; nothing more was erased."))
            return
        ack(response_action="update", view=B.notice_modal("Forget this person", "Erasing… this window says when it is done."))
        result = run.forget_person(rt, address, actor=user)
        counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in result.counts.items())
        client.views_update(view_id=view.get("id"), view=B.notice_modal(
            "Erased", f"Everything held about that person is erased ({counts}). "
                      f"The audit trail keeps entry #{result.audit_event_id} with a keyed hash of the address."))
