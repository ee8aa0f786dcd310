"""``/inquiries``: open, mine, unassigned, search <words>, show <id>, stats, new.

Each answer is built from one short query and returned in the acknowledgement itself (an
ephemeral message only the caller sees), so it arrives within Slack's 3 seconds without a
second round trip through ``response_url``.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from intake.slack import blocks as B
from intake.slack import queries as Q
from intake.slack.authz import members_only, refuse_command
from intake.slack.common import SlackDeps, int_or_none

COMMAND = "/inquiries"
HELP = (
    "*/inquiries* — `open` · `mine` · `unassigned` · `search <query>` · `show <id>` · `stats` · `new`\n"
    "A query: `category:press status:open,waiting from:@city.gov assignee:@me since:7d "
    "before:2026-12-01 lang:es has:attachment \"exact phrase\" words`"
)


def answer(deps: SlackDeps, user_id: str, text: str) -> B.Message:
    """The reply to one ``/inquiries`` invocation (pure apart from the read-only queries)."""
    verb, _, rest = (text or "").strip().partition(" ")
    verb = verb.lower()
    rest = rest.strip()
    with deps.rt.db.session() as session:
        if verb in ("", "open"):
            return B.inquiry_list("Open inquiries, oldest first", Q.open_rows(session))
        if verb == "mine":
            return B.inquiry_list("Assigned to you", Q.mine_rows(session, user_id),
                                  empty="Nothing is assigned to you.")
        if verb == "unassigned":
            return B.inquiry_list("Unassigned, oldest first", Q.unassigned_rows(session),
                                  empty="The queue is empty.")
        if verb == "search":
            if not rest:
                return B.Message(text="Usage: `/inquiries search <query>`, e.g. `category:press since:7d visa`")
            return Q.query_answer(session, deps.rt.settings, rest, user=user_id)
        if verb == "show":
            inquiry_id = int_or_none(rest)
            found = Q.detail(session, inquiry_id) if inquiry_id else None
            if found is None:
                return B.Message(text="Usage: `/inquiries show <id>` with an existing inquiry number.")
            return B.inquiry_detail(*found)
        if verb == "stats":
            return B.stats_message(Q.stats(session))
    return B.Message(text=HELP)


def register(app: App, deps: SlackDeps) -> None:
    @app.command(COMMAND, middleware=[members_only(deps.authz, refuse_command)])
    def on_inquiries(ack: Ack, command: dict[str, Any], client: WebClient) -> None:
        user = command.get("user_id", "")
        if (command.get("text") or "").strip().lower() == "new":
            ack()
            client.views_open(trigger_id=command["trigger_id"], view=B.new_inquiry_modal())
            return
        reply = answer(deps, user, command.get("text") or "")
        ack(text=reply.text, blocks=reply.blocks or None, response_type="ephemeral")
