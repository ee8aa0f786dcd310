"""Block Kit for groups: the group card and the Answer all modal. Pure functions, like blocks.py.

Every text that came from an email (the label is a member's own sentence, senders, subjects)
is escaped; the only links are ones we build from a validated workspace URL, channel ID and
message ts (``card_link``), so an email can never forge one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from intake.slack.blocks import (
    MAX_FOLDED_ROWS,
    Message,
    SuggestionData,
    button,
    context,
    fit_message,
    header,
    modal,
    option,
    section,
    text_input,
    user_mention,
)
from intake.slack.escaping import escape_trim

A_GROUP_ANSWER = "group_answer_all"
A_GROUP_MEMBER = "group_member"
V_GROUP_ANSWER = "group_answer_modal"
MAX_MEMBER_LINES = 25

_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,20}$")
_TS = re.compile(r"^\d{6,12}\.\d{1,6}$")
_WORKSPACE = re.compile(r"^https://[a-z0-9-]+(\.enterprise)?\.slack\.com/$")


@dataclass(frozen=True)
class GroupMemberRow:
    inquiry_id: int
    sender: str | None
    subject: str
    link: str | None = None  # from card_link, or None when the card is not posted


@dataclass(frozen=True)
class GroupCardData:
    group_id: int
    label: str
    category: str
    topics: Sequence[str]
    members: Sequence[GroupMemberRow]
    suggestion: SuggestionData | None = None
    answered_by: str | None = None
    dissolved: bool = False


def card_link(workspace_url: str | None, channel: str | None, ts: str | None) -> str | None:
    """``https://team.slack.com/archives/C123/p1700000000000100``, or None unless every part has
    the exact shape Slack gives it (the link text never comes from an email)."""
    if not (workspace_url and channel and ts):
        return None
    if not (_WORKSPACE.match(workspace_url) and _CHANNEL.match(channel) and _TS.match(ts)):
        return None
    return f"{workspace_url}archives/{channel}/p{ts.replace('.', '')}"


def _member_line(row: GroupMemberRow) -> str:
    ref = f"<{row.link}|#{row.inquiry_id}>" if row.link else f"#{row.inquiry_id}"
    return f"• {ref} {escape_trim(row.sender or 'unknown sender', 120)} · {escape_trim(row.subject or '(no subject)', 100)}"


def group_card(data: GroupCardData) -> Message:
    """The card: the question in a few words, how many people ask, their cards, Answer all."""
    size = len(data.members)
    if data.dissolved or size == 0:
        blocks = [section(f"*Group {data.group_id}* · {escape_trim(data.label, 300)}\n"
                          "_No one is waiting in this group any more (answered, closed or split)._")]
        return Message(text=f"Group {data.group_id}: no one left waiting", blocks=blocks)
    blocks: list[dict[str, Any]] = [
        header(f"{size} people ask: {data.label}"),
        context(f"Group {data.group_id} · `{escape_trim(data.category, 64)}`"
                + (f" · about {escape_trim(', '.join(data.topics), 200)}" if data.topics else "")),
    ]
    lines = [_member_line(m) for m in data.members[:MAX_MEMBER_LINES]]
    if size > MAX_MEMBER_LINES:
        lines.append(f"…and {size - MAX_MEMBER_LINES} more (`intake groups`)")
    blocks.append(section("\n".join(lines)))
    if data.suggestion:
        blocks.append(context(f":bulb: Suggested answer: {escape_trim(data.suggestion.title, 200)}"))
    if data.answered_by:
        blocks.append(context(f"Last answered by {user_mention(data.answered_by) or 'staff'}"))
    blocks.append({"type": "actions", "block_id": f"group_actions:{data.group_id}", "elements": [
        button(f"Answer all {size}", A_GROUP_ANSWER, str(data.group_id), style="primary"),
    ]})
    for m in data.members[:MAX_FOLDED_ROWS]:
        blocks.append(section(f"#{m.inquiry_id} {escape_trim(m.subject or '(no subject)', 100)}", accessory={
            "type": "overflow", "action_id": A_GROUP_MEMBER,
            "options": [option("Split out of this group", f"split:{data.group_id}:{m.inquiry_id}")],
        }))
    text = f"Group {data.group_id}: {size} people ask {escape_trim(data.label, 150)}"
    return Message(text=text, blocks=fit_message(blocks))


def answer_all_modal(*, group_id: int, label: str, count: int, body: str | None,
                     suggestion_title: str | None = None) -> dict[str, Any]:
    """One text, sent as one individual email to each person in the group."""
    blocks = [
        section(f"*{escape_trim(label, 300)}*\n"
                f"Your answer goes to the *{count} people* in group {group_id} when you press Send: one "
                "email each, in their own conversation, counted by the usual limits on mail to one "
                "address and recorded on each card."),
    ]
    if suggestion_title:
        blocks.append(context(f":bulb: Started from the approved answer: {escape_trim(suggestion_title, 200)}"))
    blocks.append(text_input("body", "Answer", multiline=True, initial=body))
    return modal(f"Answer all {count}", blocks, callback_id=V_GROUP_ANSWER, submit="Send",
                 private_metadata=json.dumps({"group_id": group_id}))

