"""Block Kit builders: pure functions from plain data to Slack JSON.

Nothing here touches the database, the network or Bolt, so every layout and every limit is tested
on its own (tests/test_slack_blocks.py). The jobs and listeners read rows, turn them into the
dataclasses below (see ``intake.slack.queries``) and hand the result to Slack.

Every piece of text that came from an email, a Slack user or the database goes through
``escaping.escape`` (mrkdwn) or ``escaping.trim`` (plain_text); the only raw mrkdwn this module
writes is its own markup (bold, ``<@U…>`` for well-formed user IDs, ``<!date…>``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from intake.slack.escaping import cut_escaped, escape, escape_trim, trim, user_mention, usergroup_mention

# Block Kit limits (https://api.slack.com/reference/block-kit): kept here, tested against.
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_MODAL_TITLE = 24
MAX_CONTEXT_TEXT = 2000
MAX_OPTION_TEXT = 75
MAX_PRIVATE_METADATA = 3000
MAX_STATIC_OPTIONS = 100
MAX_INPUT_INITIAL = 3000
# Slack rejects a message whose blocks total more than about 13,000 characters with
# msg_blocks_too_long; we keep a margin for JSON punctuation counted differently.
MAX_MESSAGE_CHARS = 12000
# How much of the latest reply the card shows before pointing at the full text.
CARD_EXCERPT_CHARS = 1500
# Folded inquiries that get their own row (with a menu) on a burst card; the rest are listed.
MAX_FOLDED_ROWS = 8

# action_id / callback_id values shared with the listeners.
A_CLAIM = "inq_claim"
A_ASSIGN = "inq_assign"
A_RECLASSIFY = "inq_reclassify"
A_REPLY = "inq_reply"
A_NOTE = "inq_note"
A_CLOSE = "inq_close"
A_REOPEN = "inq_reopen"
A_SPAM = "inq_spam"
A_NOT_SPAM = "inq_not_spam"
A_FULL_TEXT = "inq_full_text"
A_SUGGEST_SEND = "inq_suggest_send"
A_SUGGEST_EDIT = "inq_suggest_edit"
A_FOLDED = "inq_folded"
A_DIGEST_REVIEW = "digest_review"
A_DIGEST_RESTORE = "digest_restore"
A_REPLY_TEMPLATE = "reply_template"
A_HOME_REFRESH = "home_refresh"
A_HOME_SEARCH = "home_search"
A_WAITING = "inq_waiting"

V_REPLY = "reply_modal"
V_NOTE = "note_modal"
V_NEW = "new_inquiry_modal"
V_LOG_MESSAGE = "log_message_modal"
V_DIGEST = "digest_review_modal"
V_FULL_TEXT = "full_text_modal"

REPLY_SEND = "send"
REPLY_NOTE = "note"

STATUS_EMOJI = {
    "new": ":new:",
    "open": ":large_yellow_circle:",
    "waiting": ":hourglass_flowing_sand:",
    "closed": ":white_check_mark:",
    "spam": ":no_entry_sign:",
}


# --------------------------------------------------------------------------------------------
# Plain data the builders take


@dataclass(frozen=True)
class SuggestionData:
    title: str
    answer: str
    score: float


@dataclass(frozen=True)
class FoldedItem:
    """Another inquiry from the same sender, folded into this card during a burst."""

    inquiry_id: int
    subject: str
    status: str
    received_at: dt.datetime | None = None


@dataclass(frozen=True)
class CardData:
    inquiry_id: int
    subject: str
    sender_name: str | None
    sender_address: str | None
    status: str
    category: str | None
    confidence: float | None = None
    reasons: Sequence[str] = ()
    needs_review: bool = False
    language: str | None = None
    received_at: dt.datetime | None = None
    assignee: str | None = None
    latest_reply: str | None = None
    message_count: int = 1
    suggestion: SuggestionData | None = None
    folded: Sequence[FoldedItem] = ()
    acknowledged: bool = False  # the applicant got the automatic acknowledgment
    # The inquiry's version as this card is drawn; buttons carry it so that a second click on
    # the same drawing (a double click, two people at once) is refused instead of repeated.
    version: int = 0
    # Emails the outbox gave up on (what staff must resend or handle another way).
    failed_deliveries: Sequence[str] = ()
    group_id: int | None = None  # one of a group asking the same question (intake/grouping)
    response_due: dt.datetime | None = None  # the running response clock (intake.sla.clock)
    overdue: bool = False

    @property
    def button_value(self) -> str:
        return f"{self.inquiry_id}:{self.version}"
    reply_to: str | None = None  # where a staff reply goes now (intake.recipients)
    # Plain sentences staff must see before replying: a Reply-To new to the conversation, a
    # message that failed sender authentication.
    reply_warnings: Sequence[str] = ()

    @property
    def organization(self) -> str | None:
        if self.sender_address and "@" in self.sender_address:
            return self.sender_address.rpartition("@")[2]
        return None


@dataclass(frozen=True)
class RecipientChoice:
    """One address the reply modal offers: the default first."""

    address: str
    label: str  # "Name <address>"
    note: str  # why it is offered
    warning: bool = False  # new to the conversation or unverified


@dataclass(frozen=True)
class InquiryRow:
    """One line of a list (/inquiries open, App Home, the digest review)."""

    inquiry_id: int
    subject: str
    sender: str | None
    status: str
    category: str | None
    assignee: str | None = None
    received_at: dt.datetime | None = None
    permalink: str | None = None
    due_at: dt.datetime | None = None  # a staff response is owed by then
    overdue: bool = False


@dataclass(frozen=True)
class HomeData:
    user_id: str
    mine: Sequence[InquiryRow] = ()
    unassigned: Sequence[InquiryRow] = ()
    by_category: Sequence[tuple[str, int]] = ()
    by_age: Sequence[tuple[str, int]] = ()
    allowed: bool = True
    query: str | None = None  # the search box (the search language, intake/search.py)
    results: Sequence[InquiryRow] = ()
    query_error: str | None = None
    due: Sequence[InquiryRow] = ()  # mine with a response owed, soonest first (shown first)


@dataclass(frozen=True)
class DigestData:
    counts: Sequence[tuple[str, int]]  # (category or "spam", count)
    after_id: int  # exclusive lower bound of inquiry ids covered
    through_id: int  # inclusive upper bound
    samples: Sequence[InquiryRow] = ()
    notes: Sequence[str] = ()  # e.g. "3 acknowledgments held back by caps"

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)


@dataclass(frozen=True)
class Stats:
    by_status: Sequence[tuple[str, int]] = ()
    by_category: Sequence[tuple[str, int]] = ()
    by_age: Sequence[tuple[str, int]] = ()
    oldest_open: InquiryRow | None = None


@dataclass(frozen=True)
class Message:
    """A Slack message: fallback text (shown in notifications, also mrkdwn) and blocks."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def as_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


# --------------------------------------------------------------------------------------------
# Small element helpers


def plain(text: object, limit: int = MAX_SECTION_TEXT) -> dict[str, Any]:
    return {"type": "plain_text", "text": trim(text, limit) or " ", "emoji": False}


def mrkdwn(text: str) -> dict[str, Any]:
    """A mrkdwn object; ``text`` must already be escaped or be our own markup."""
    return {"type": "mrkdwn", "text": text or " ", "verbatim": True}


def section(text: str, accessory: dict[str, Any] | None = None, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": mrkdwn(cut_escaped(text, MAX_SECTION_TEXT))}
    if accessory:
        block["accessory"] = accessory
    if block_id:
        block["block_id"] = block_id
    return block


def header(text: object) -> dict[str, Any]:
    return {"type": "header", "text": plain(text, MAX_HEADER_TEXT)}


def context(*texts: str) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [mrkdwn(cut_escaped(t, MAX_CONTEXT_TEXT)) for t in texts if t][:10] or [mrkdwn(" ")],
    }


def divider() -> dict[str, Any]:
    return {"type": "divider"}


def button(text: str, action_id: str, value: str, style: str | None = None,
           confirm: dict[str, Any] | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "text": plain(text, MAX_BUTTON_TEXT),
        "action_id": action_id,
        "value": value[:2000],
    }
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def option(text: object, value: str) -> dict[str, Any]:
    return {"text": plain(text, MAX_OPTION_TEXT), "value": value[:150]}


def confirm_dialog(title: str, text: str, yes: str) -> dict[str, Any]:
    return {
        "title": plain(title, 100),
        "text": plain(text, 300),
        "confirm": plain(yes, 30),
        "deny": plain("Cancel", 30),
    }


def slack_date(when: dt.datetime | None) -> str:
    """Slack's date token: each reader sees their own time zone; the fallback is UTC."""
    if when is None:
        return "unknown"
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    epoch = int(when.timestamp())
    fallback = when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{epoch}^{{date_short_pretty}} {{time}}|{fallback}>"


def sender_label(name: str | None, address: str | None) -> str:
    """``Name (address)`` as plain text, for the builders that take a sender and escape it
    themselves (thread lines, modals): passing them ``sender_text`` escaped it twice."""
    name, address = (name or "").strip(), (address or "").strip()
    if name and address:
        return f"{name} ({address})"
    return name or address or "unknown sender"


def sender_text(name: str | None, address: str | None) -> str:
    """``Name (address)``, escaped: angle brackets around an address would be markup in mrkdwn."""
    name_e = escape_trim(name, 200) if name else ""
    addr_e = escape_trim(address, 320) if address else ""
    if name_e and addr_e:
        return f"{name_e} ({addr_e})"
    return name_e or addr_e or "unknown sender"


def category_text(category: str | None, confidence: float | None) -> str:
    if not category:
        return "_unclassified_"
    text = f"`{escape_trim(category, 64)}`"
    if confidence is not None:
        text += f" {round(confidence * 100)}%"
    return text


def _json_len(blocks: Iterable[dict[str, Any]]) -> int:
    return len(json.dumps(list(blocks), ensure_ascii=False))


def _shrinkable(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mrkdwn text objects a message can lose characters from (sections, fields, contexts)."""
    found: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("type") == "section":
            if block.get("text"):
                found.append(block["text"])
            found += [f for f in block.get("fields", []) if f.get("type") == "mrkdwn"]
        elif block.get("type") == "context":
            found += [e for e in block.get("elements", []) if e.get("type") == "mrkdwn"]
    return found


def fit_message(blocks: list[dict[str, Any]], *, max_blocks: int = MAX_MESSAGE_BLOCKS,
                max_chars: int = MAX_MESSAGE_CHARS) -> list[dict[str, Any]]:
    """Keep a message within Slack's block count and total size by shortening its longest texts.

    The builders already trim each field; this is the last guard against the sum of them (for
    example a card with many folded inquiries) tripping ``msg_blocks_too_long``. Actions blocks
    are kept: a card without its buttons is useless.
    """
    if len(blocks) > max_blocks:
        keep_tail = [b for b in blocks[-4:] if b.get("type") in ("actions", "context")]
        head = [b for b in blocks if b not in keep_tail][: max_blocks - len(keep_tail) - 1]
        blocks = head + [context("_…more items not shown_")] + keep_tail
    for _ in range(100):
        excess = _json_len(blocks) - max_chars
        if excess <= 0:
            return blocks
        texts = _shrinkable(blocks)
        longest = max(texts, key=lambda t: len(t["text"]), default=None)
        if longest is None or len(longest["text"]) <= 200:
            break
        longest["text"] = cut_escaped(longest["text"], max(200, len(longest["text"]) - excess - 200))
    # Still too long: drop optional blocks (anything but the header, actions and last line).
    while _json_len(blocks) > max_chars:
        optional = [i for i, b in enumerate(blocks[1:-1], start=1) if b.get("type") not in ("actions", "header")]
        if not optional:
            break
        del blocks[optional[-1]]
    return blocks


# --------------------------------------------------------------------------------------------
# The triage card


def card_actions(card: CardData) -> dict[str, Any]:
    value = card.button_value
    elements = [
        button("Claim", A_CLAIM, value, style="primary") if not card.assignee else None,
        button("Reply", A_REPLY, value),
        button("Note", A_NOTE, value),
        _waiting_or_resume(card.status, value),
        _close_or_reopen(card.status, value),
        button("Not spam", A_NOT_SPAM, value) if card.status == "spam"
        else button("Spam", A_SPAM, value, style="danger",
                    confirm=confirm_dialog("Mark as spam?", "The card moves to the spam digest.", "Spam")),
        button("Full text", A_FULL_TEXT, value),
    ]
    return {"type": "actions", "block_id": f"card_actions:{card.inquiry_id}", "elements": [e for e in elements if e]}


def _waiting_or_resume(status: str, value: str) -> dict[str, Any] | None:
    """Waiting on the applicant pauses the response clock; Resume takes the card back to open."""
    if status in ("new", "open"):
        return button("Waiting on applicant", A_WAITING, value)
    if status == "waiting":
        return button("Resume", A_REOPEN, value)
    return None


def _close_or_reopen(status: str, value: str) -> dict[str, Any] | None:
    if status == "closed":
        return button("Reopen", A_REOPEN, value)
    if status == "spam":
        return None  # "Not spam" restores it; closing spam means nothing
    return button("Close", A_CLOSE, value)


def card_menus(card: CardData, categories: Sequence[str]) -> dict[str, Any]:
    value = str(card.inquiry_id)
    assign: dict[str, Any] = {
        "type": "users_select",
        "action_id": A_ASSIGN,
        "placeholder": plain("Assign to…", 150),
    }
    if card.assignee:
        assign["initial_user"] = card.assignee
    options = [option(c, c) for c in list(categories)[:MAX_STATIC_OPTIONS]]
    reclassify: dict[str, Any] = {
        "type": "static_select",
        "action_id": A_RECLASSIFY,
        "placeholder": plain("Reclassify…", 150),
        "options": options,
    }
    if card.category in categories:
        reclassify["initial_option"] = option(card.category, card.category or "")
    # The inquiry id travels in block_id: selects carry no value of their own.
    return {"type": "actions", "block_id": f"card_menus:{value}", "elements": [assign, reclassify]}


def triage_card(card: CardData, categories: Sequence[str]) -> Message:
    """The card for one inquiry (plus any inquiries folded into it from the same sender)."""
    status = card.status or "new"
    fields = [
        mrkdwn(f"*From*\n{sender_text(card.sender_name, card.sender_address)}"),
        mrkdwn(f"*Organization*\n{escape_trim(card.organization, 255) or '—'}"),
        mrkdwn(f"*Category*\n{category_text(card.category, card.confidence)}"
               + (" :warning: needs review" if card.needs_review else "")),
        mrkdwn(f"*Status*\n{STATUS_EMOJI.get(status, '')} {escape(status)}"),
        mrkdwn(f"*Assignee*\n{user_mention(card.assignee) or '_unassigned_'}"),
        mrkdwn(f"*Received*\n{slack_date(card.received_at)}"),
    ]
    if card.language:
        fields.append(mrkdwn(f"*Language*\n{escape_trim(card.language, 16)}"))
    if card.response_due and status in ("new", "open"):
        fields.append(mrkdwn(due_text(card.response_due, card.overdue)))
    blocks: list[dict[str, Any]] = [
        header(card.subject or "(no subject)"),
        {"type": "section", "fields": fields},
    ]
    if card.reasons:
        blocks.append(context("*Why:* " + escape_trim("; ".join(card.reasons), 1500)))
    if card.reply_to:
        blocks.append(context(f"*Replies go to* {escape_trim(card.reply_to, 320)}"))
    for warning in list(card.reply_warnings)[:3]:
        blocks.append(context(":warning: " + escape_trim(warning, 600)))
    excerpt = card.latest_reply or ""
    quoted = escape_trim(excerpt.strip() or "(empty message)", CARD_EXCERPT_CHARS)
    quoted = "\n".join("&gt; " + line if line else "&gt;" for line in quoted.splitlines()) or "&gt;"
    blocks.append(section(quoted))
    if len(excerpt) > CARD_EXCERPT_CHARS:
        blocks.append(context("_Trimmed: press *Full text* to read the whole message._"))
    if card.folded:
        lines = [f"*{len(card.folded)} more from this sender* (folded into this card):"]
        for item in card.folded[:10]:
            lines.append(f"• #{item.inquiry_id} {escape_trim(item.subject or '(no subject)', 100)}"
                         f" · {escape(item.status)}")
        if len(card.folded) > 10:
            lines.append(f"…and {len(card.folded) - 10} more")
        blocks.append(section("\n".join(lines)))
        for item in card.folded[:MAX_FOLDED_ROWS]:
            blocks.append(folded_row(item))
    if card.suggestion:
        s = card.suggestion
        blocks.append(section(
            f":bulb: *Suggested answer:* {escape_trim(s.title, 200)} (score {s.score:.2f})\n"
            + escape_trim(s.answer, 1200)
        ))
        value = card.button_value
        blocks.append({
            "type": "actions",
            "block_id": f"card_suggest:{card.inquiry_id}",
            "elements": [
                button("Send suggested answer", A_SUGGEST_SEND, value, style="primary",
                       confirm=confirm_dialog("Send this answer?",
                                              trim(s.answer, 250), "Send")),
                button("Edit before sending", A_SUGGEST_EDIT, value),
            ],
        })
    for problem in list(card.failed_deliveries)[:3]:
        blocks.append(section(f":rotating_light: *Not delivered:* {escape_trim(problem, 500)}"))
    blocks.append(card_actions(card))
    blocks.append(card_menus(card, categories))
    blocks.append(context(
        f"Inquiry #{card.inquiry_id} · {card.message_count} message"
        f"{'s' if card.message_count != 1 else ''}"
        + (" · acknowledged by email" if card.acknowledged else "")
        + (f" · in group {card.group_id}" if card.group_id else "")
    ))
    subject = escape_trim(card.subject or "(no subject)", 150)
    return Message(text=f"Inquiry #{card.inquiry_id}: {subject}", blocks=fit_message(blocks))


def folded_row(item: FoldedItem) -> dict[str, Any]:
    """A one-line row for a folded inquiry with an overflow menu acting on that inquiry."""
    value = str(item.inquiry_id)
    return section(
        f"#{item.inquiry_id} {escape_trim(item.subject or '(no subject)', 100)}",
        accessory={
            "type": "overflow",
            "action_id": A_FOLDED,
            "options": [
                option("Claim", f"claim:{value}"),
                option("Reply", f"reply:{value}"),
                option("Full text", f"full:{value}"),
                option("Close", f"close:{value}"),
                option("Spam", f"spam:{value}"),
            ],
        },
    )


# --------------------------------------------------------------------------------------------
# Thread lines


EVENT_VERBS = {
    "claimed": "claimed it",
    "assigned": "assigned it to {assignee}",
    "reclassified": "reclassified it as {category}",
    "closed": "closed it",
    "reopened": "reopened it",
    "marked_spam": "marked it as spam",
    "marked_not_spam": "restored it (not spam) as {category}",
    "note": "added a note",
    "waiting": ":hourglass_flowing_sand: marked it waiting on the applicant (the response clock pauses)",
    "received": "received it",
    "follow_up": "received a follow-up",
    "reply_sent": ":outbox_tray: sent the email reply to {to}",
    "ack_sent": "sent the automatic acknowledgment to {to}",
    "ack_suppressed": "sent no automatic acknowledgment ({reasons})",
    "cap_hit": ":warning: held back an email to {to}: more than {cap}",
    "send_failed": ":warning: could not send the email to {to}: {error}",
    "smtp_delayed": ":warning: the email to {to} is delayed (attempt {attempts}); still retrying",
    "split_from_group": "took it out of group {group} (it asks something else)",
    "sender_unverified": ":warning: the follow-up claiming to be from {address} failed sender "
                         "authentication ({reasons}); replies still go to {reply_to}",
}
# The verbs of the domain's older spelling, so a renamed event kind still reads well.
EVENT_VERBS.update({
    "claim": EVENT_VERBS["claimed"], "assign": EVENT_VERBS["assigned"],
    "reclassify": EVENT_VERBS["reclassified"], "close": EVENT_VERBS["closed"],
    "reopen": EVENT_VERBS["reopened"], "mark_spam": EVENT_VERBS["marked_spam"],
    "mark_not_spam": EVENT_VERBS["marked_not_spam"], "add_note": EVENT_VERBS["note"],
})


class _SafeDetail(dict):
    """Event detail for ``str.format_map``: escaped values, missing keys read as "?"."""

    def __missing__(self, key: str) -> str:
        return "?"


def _detail_values(detail: dict[str, Any]) -> _SafeDetail:
    values = _SafeDetail()
    for key, value in detail.items():
        if isinstance(value, (list, tuple)):
            value = "; ".join(str(v) for v in value)
        values[key] = escape_trim(value, 300) if value is not None else "?"
    values["assignee"] = user_mention(str(detail.get("assignee") or "")) or "nobody"
    values["category"] = f"`{escape_trim(detail.get('category') or '?', 64)}`"
    return values


def event_line(kind: str, actor: str, detail: dict[str, Any] | None, inquiry_id: int,
               *, text: str | None = None, show_id: bool = False) -> Message:
    """"<who> <did what>" for the card's thread, with a note's or reply's text quoted below.

    ``show_id`` when the thread holds a folded burst, so each line says which inquiry it is about.
    """
    detail = detail or {}
    who = "intake" if actor in ("system", "", None) else user_mention(actor)
    template = EVENT_VERBS.get(kind) or escape(kind.replace("_", " "))
    # The template is ours; every value substituted into it is escaped by _detail_values.
    verb = template.format_map(_detail_values(detail)) if kind in EVENT_VERBS else template
    prefix = f"#{inquiry_id} · " if show_id else ""
    line = f"{prefix}{who} {verb}"
    blocks = [section(line)]
    if text:
        blocks.append(section(_quote(escape_trim(text.strip(), 2800))))
    return Message(text=line, blocks=blocks)


def _quote(escaped: str) -> str:
    return "\n".join("&gt; " + line if line else "&gt;" for line in escaped.splitlines()) or "&gt;"


def followup_line(*, inquiry_id: int, direction: str, sender: str | None, subject: str | None,
                  body: str | None, author: str | None = None, reopened: bool = False,
                  show_id: bool = False) -> Message:
    """A follow-up email (or a reply staff sent) as a line in the card's thread."""
    prefix = f"#{inquiry_id} · " if show_id else ""
    if direction == "outbound":
        head = f"{prefix}:outbox_tray: {user_mention(author) or 'intake'} replied by email"
    else:
        head = f"{prefix}:incoming_envelope: Follow-up from {escape_trim(sender or 'the sender', 300)}"
    if reopened:
        head += " (inquiry reopened)"
    blocks = [section(head)]
    if subject:
        blocks.append(context(f"*Subject:* {escape_trim(subject, 500)}"))
    blocks.append(section(_quote(escape_trim((body or "").strip() or "(empty message)", 2800))))
    return Message(text=head, blocks=fit_message(blocks))


# --------------------------------------------------------------------------------------------
# Modals


def modal(title: str, blocks: list[dict[str, Any]], *, callback_id: str,
          submit: str | None = None, private_metadata: str = "") -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title, MAX_MODAL_TITLE),
        "close": plain("Cancel" if submit else "Close", 24),
        "blocks": blocks[:MAX_VIEW_BLOCKS],
    }
    if submit:
        view["submit"] = plain(submit, 24)
    if private_metadata:
        if len(private_metadata) > MAX_PRIVATE_METADATA:
            raise ValueError("private_metadata over Slack's 3,000 characters")
        view["private_metadata"] = private_metadata
    return view


def text_input(block_id: str, label: str, *, multiline: bool = False, initial: str | None = None,
               optional: bool = False, placeholder: str | None = None, max_length: int = 3000) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value", "multiline": multiline,
                               "max_length": max_length}
    if initial:
        element["initial_value"] = trim(initial, min(max_length, MAX_INPUT_INITIAL))
    if placeholder:
        element["placeholder"] = plain(placeholder, 150)
    return {"type": "input", "block_id": block_id, "optional": optional,
            "label": plain(label, 2000), "element": element}


def _recipient_block(choices: Sequence[RecipientChoice]) -> dict[str, Any]:
    """Who the email goes to: the conversation's address preselected; any other address is
    used only when picked here (radio buttons show each option's reason)."""
    options = [
        {"text": plain(("⚠ " if c.warning else "") + c.label, MAX_OPTION_TEXT),
         "description": plain(c.note, MAX_OPTION_TEXT), "value": c.address[:150]}
        for c in list(choices)[:10]  # Slack's limit for radio buttons
    ]
    return {
        "type": "input",
        "block_id": "recipient",
        "label": plain("Send the email to", 2000),
        "element": {"type": "radio_buttons", "action_id": "value", "options": options,
                    "initial_option": options[0]},
    }


def reply_modal(*, inquiry_id: int, subject: str, sender: str | None, latest: str | None,
                templates: Sequence[tuple[str, str]] = (), body: str | None = None,
                default_action: str = REPLY_SEND, revision: int = 0,
                recipients: Sequence[RecipientChoice] = ()) -> dict[str, Any]:
    """Reply modal: the applicant's latest message, a template picker, the text, who it goes to,
    and two distinct outcomes chosen with radio buttons (never a prefix typed into the text).

    ``revision`` changes the body input's block_id so that Slack shows a new initial value after
    a template is picked (Slack keeps what the user typed in a block it already knows).
    """
    blocks: list[dict[str, Any]] = [
        section(f"*{escape_trim(subject or '(no subject)', 200)}*\nFrom {escape_trim(sender or 'unknown', 300)}"),
        section("*Their latest message:*\n" + _quote(escape_trim((latest or '').strip() or '(empty)', 2500))),
    ]
    if templates:
        blocks.append({
            "type": "actions",
            "block_id": "template",
            "elements": [{
                "type": "static_select",
                "action_id": A_REPLY_TEMPLATE,
                "placeholder": plain("Start from a saved reply…", 150),
                "options": [option(name, str(i)) for i, (name, _) in enumerate(templates[:MAX_STATIC_OPTIONS])],
            }],
        })
    blocks.append(text_input(f"body_{revision}", "Message", multiline=True, initial=body))
    if len(recipients) > 1:
        blocks.append(_recipient_block(recipients))
    elif recipients:
        blocks.append(context(f"The email goes to {escape_trim(recipients[0].label, 400)}"))
    send = option("Send to applicant (email)", REPLY_SEND)
    note = option("Save as internal note (not sent)", REPLY_NOTE)
    blocks.append({
        "type": "input",
        "block_id": "mode",
        "label": plain("What should happen?", 2000),
        "element": {
            "type": "radio_buttons",
            "action_id": "value",
            "options": [send, note],
            "initial_option": send if default_action == REPLY_SEND else note,
        },
    })
    meta = json.dumps({"inquiry_id": inquiry_id, "revision": revision})
    return modal(f"Reply to #{inquiry_id}", blocks, callback_id=V_REPLY, submit="Done",
                 private_metadata=meta)


def note_modal(*, inquiry_id: int, subject: str) -> dict[str, Any]:
    blocks = [
        section(f"Internal note on *#{inquiry_id} {escape_trim(subject or '(no subject)', 200)}*\n"
                "_Notes stay inside Slack and intake; the applicant never sees them._"),
        text_input("body", "Note", multiline=True),
    ]
    return modal(f"Note on #{inquiry_id}", blocks, callback_id=V_NOTE, submit="Save note",
                 private_metadata=json.dumps({"inquiry_id": inquiry_id}))


def new_inquiry_modal(*, callback_id: str = V_NEW, title: str = "Log an inquiry",
                      sender_address: str | None = None, sender_name: str | None = None,
                      subject: str | None = None, body: str | None = None,
                      private_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Log an inquiry that came by phone, in person or as a Slack message."""
    blocks = [
        text_input("sender_address", "Their email address", initial=sender_address, max_length=320,
                   placeholder="name@example.org"),
        text_input("sender_name", "Their name", initial=sender_name, optional=True, max_length=200),
        text_input("subject", "Subject", initial=subject, max_length=250),
        text_input("body", "What they asked", multiline=True, initial=body),
    ]
    return modal(title, blocks, callback_id=callback_id, submit="Log inquiry",
                 private_metadata=json.dumps(private_metadata or {}))


def full_text_modal(*, inquiry_id: int, subject: str, sender: str | None, text: str | None) -> dict[str, Any]:
    """The whole latest message, split over as many sections as Slack's modal allows."""
    escaped = escape((text or "").strip() or "(empty message)")
    blocks: list[dict[str, Any]] = [
        section(f"*{escape_trim(subject or '(no subject)', 300)}*\nFrom {escape_trim(sender or 'unknown', 300)}"),
        divider(),
    ]
    pieces = split_escaped(escaped, MAX_SECTION_TEXT - 10)
    room = MAX_VIEW_BLOCKS - len(blocks) - 1
    blocks += [{"type": "section", "text": mrkdwn(piece)} for piece in pieces[:room]]
    if len(pieces) > room:
        blocks.append(context("_The message continues; see `intake show` for all of it._"))
    return modal(f"Inquiry #{inquiry_id}", blocks, callback_id=V_FULL_TEXT)


def split_escaped(escaped: str, size: int) -> list[str]:
    """Escaped text in pieces of at most ``size`` characters, never splitting an entity."""
    pieces: list[str] = []
    pos = 0
    while pos < len(escaped):
        end = min(len(escaped), pos + size)
        if end < len(escaped):
            amp = escaped.rfind("&", max(pos, end - 5), end)
            if amp > pos and ";" not in escaped[amp:end]:
                end = amp
        pieces.append(escaped[pos:end])
        pos = end
    return pieces


def digest_review_modal(rows: Sequence[InquiryRow], *, after_id: int, through_id: int) -> dict[str, Any]:
    """The spam/automated inquiries of a digest, each with a button to restore a false positive."""
    blocks: list[dict[str, Any]] = [
        section(f"*{len(rows)} inquiries* filtered as spam or automated. "
                "Restore any that a person wrote: its card is then posted."),
        divider(),
    ]
    room = (MAX_VIEW_BLOCKS - len(blocks) - 1)
    for row in rows[:room]:
        blocks.append(section(
            f"*#{row.inquiry_id}* {escape_trim(row.subject or '(no subject)', 200)}\n"
            f"{escape_trim(row.sender or 'unknown', 300)} · `{escape_trim(row.category or row.status, 64)}`",
            accessory=button("Not spam", A_DIGEST_RESTORE, str(row.inquiry_id)),
            block_id=f"restore:{row.inquiry_id}",
        ))
    if len(rows) > room:
        blocks.append(context(f"…{len(rows) - room} more; use `intake list --status spam`."))
    if not rows:
        blocks.append(section("_Nothing left to review._"))
    return modal("Filtered inquiries", blocks, callback_id=V_DIGEST,
                 private_metadata=json.dumps({"after_id": after_id, "through_id": through_id}))


# --------------------------------------------------------------------------------------------
# Digest, lists, App Home


def digest_card(data: DigestData) -> Message:
    lines = [f"• `{escape_trim(name, 64)}`: {count}" for name, count in data.counts]
    blocks: list[dict[str, Any]] = [
        header(f"Filtered: {data.total} spam and automated"),
        section("\n".join(lines) or "_nothing filtered_"),
    ]
    for sample in list(data.samples)[:5]:
        blocks.append(context(f"#{sample.inquiry_id} {escape_trim(sample.subject or '(no subject)', 150)} · "
                              f"{escape_trim(sample.sender or 'unknown', 200)}"))
    for note in data.notes:
        blocks.append(context(escape_trim(note, 500)))
    blocks.append({
        "type": "actions",
        "block_id": "digest",
        "elements": [button("Review and restore", A_DIGEST_REVIEW, f"{data.after_id}:{data.through_id}")],
    })
    return Message(text=f"Filtered {data.total} spam and automated inquiries", blocks=fit_message(blocks))


def row_text(row: InquiryRow) -> str:
    bits = [f"*#{row.inquiry_id}* {escape_trim(row.subject or '(no subject)', 150)}"]
    meta = [escape_trim(row.sender or "unknown", 200), escape(row.status)]
    if row.category:
        meta.append(f"`{escape_trim(row.category, 64)}`")
    if row.assignee:
        meta.append(user_mention(row.assignee))
    if row.received_at:
        meta.append(slack_date(row.received_at))
    if row.due_at:
        meta.append(due_text(row.due_at, row.overdue, inline=True))
    line = " · ".join(bits) + "\n" + " · ".join(meta)
    if row.permalink and row.permalink.startswith("https://"):
        line += f" · <{escape(row.permalink)}|card>"
    return line


def inquiry_list(title: str, rows: Sequence[InquiryRow], *, empty: str = "Nothing here.",
                 max_rows: int = 20) -> Message:
    blocks: list[dict[str, Any]] = [header(title)]
    for row in rows[:max_rows]:
        blocks.append(section(row_text(row)))
    if len(rows) > max_rows:
        blocks.append(context(f"…and {len(rows) - max_rows} more (`intake list` shows all)."))
    if not rows:
        blocks.append(section(escape(empty)))
    return Message(text=escape_trim(title, 150), blocks=fit_message(blocks))


def inquiry_detail(card: CardData, messages: Sequence[tuple[str, str | None, str | None]],
                   events: Sequence[str]) -> Message:
    """/inquiries show ID: the card summary, its messages (direction, sender, text) and events."""
    blocks: list[dict[str, Any]] = [
        header(f"#{card.inquiry_id} {card.subject or '(no subject)'}"),
        section(f"*From* {sender_text(card.sender_name, card.sender_address)}\n"
                f"*Status* {escape(card.status)} · *Category* {category_text(card.category, card.confidence)}"
                f" · *Assignee* {user_mention(card.assignee) or '_unassigned_'}"),
    ]
    for direction, sender, text in list(messages)[-10:]:
        blocks.append(section(f"*{escape(direction)}* {escape_trim(sender or '', 200)}\n"
                              + _quote(escape_trim((text or '').strip() or '(empty)', 1200))))
    if events:
        blocks.append(context(escape_trim(" · ".join(events[-10:]), 1900)))
    return Message(text=f"Inquiry #{card.inquiry_id}", blocks=fit_message(blocks))


def stats_message(stats: Stats) -> Message:
    def lines(pairs: Sequence[tuple[str, int]]) -> str:
        return "\n".join(f"• {escape_trim(k, 64)}: {v}" for k, v in pairs) or "_none_"

    blocks = [
        header("Inquiry stats"),
        {"type": "section", "fields": [
            mrkdwn("*By status*\n" + lines(stats.by_status)),
            mrkdwn("*Open by category*\n" + lines(stats.by_category)),
            mrkdwn("*Open by age*\n" + lines(stats.by_age)),
        ]},
    ]
    if stats.oldest_open:
        blocks.append(context("Oldest open: " + row_text(stats.oldest_open).replace("\n", " · ")))
    return Message(text="Inquiry stats", blocks=blocks)


def home_view(data: HomeData) -> dict[str, Any]:
    """The App Home tab: my inquiries, the unassigned queue (oldest first), counts."""
    if not data.allowed:
        return {"type": "home", "blocks": [
            header("Inquiries"),
            section("You are not a member of the triage channel, so inquiries are not shown here. "
                    "Ask to be added to the channel."),
        ]}
    blocks: list[dict[str, Any]] = [
        header("Inquiries"),
        {"type": "actions", "elements": [button("Refresh", A_HOME_REFRESH, "refresh")]},
        *home_search_blocks(data),
    ]
    # Due and overdue first (response targets, intake.sla), then mine, then the queue.
    budget = (MAX_VIEW_BLOCKS - len(blocks) - 10) // (3 if data.due else 2)
    if data.due:
        overdue = sum(1 for r in data.due if r.overdue)
        blocks.append(header(f"Due and overdue ({len(data.due)}, {overdue} overdue)"))
        blocks += [section(row_text(r)) for r in list(data.due)[:budget]]
    blocks.append(header(f"Mine ({len(data.mine)})"))
    blocks += [section(row_text(r)) for r in list(data.mine)[:budget]] or [section("_Nothing assigned to you._")]
    blocks.append(header(f"Unassigned ({len(data.unassigned)}), oldest first"))
    blocks += [section(row_text(r)) for r in list(data.unassigned)[:budget]] or [section("_The queue is empty._")]
    blocks.append(divider())
    blocks.append({"type": "section", "fields": [
        mrkdwn("*Open by category*\n" + ("\n".join(f"• {escape_trim(k, 64)}: {v}" for k, v in data.by_category) or "_none_")),
        mrkdwn("*Open by age*\n" + ("\n".join(f"• {escape_trim(k, 64)}: {v}" for k, v in data.by_age) or "_none_")),
    ]})
    view: dict[str, Any] = {"type": "home", "blocks": blocks[:MAX_VIEW_BLOCKS]}
    if data.query:
        view["private_metadata"] = json.dumps({"query": data.query[:2000]})
    return view


HOME_SEARCH_ROWS = 15


def home_search_blocks(data: HomeData) -> list[dict[str, Any]]:
    """A search box (press Enter to search) and, after a search, its results or its error."""
    element: dict[str, Any] = {
        "type": "plain_text_input", "action_id": A_HOME_SEARCH, "max_length": 500,
        "placeholder": plain("category:press since:7d visa", 150),
        "dispatch_action_config": {"trigger_actions_on": ["on_enter_pressed"]},
    }
    if data.query:
        element["initial_value"] = trim(data.query, 500)
    blocks: list[dict[str, Any]] = [{
        "type": "input", "block_id": "home_search", "dispatch_action": True, "optional": True,
        "label": plain("Search", 2000), "element": element,
    }]
    if data.query_error:
        blocks.append(context(f":warning: {escape_trim(data.query_error, 500)}"))
    elif data.query:
        blocks += [section(row_text(r)) for r in list(data.results)[:HOME_SEARCH_ROWS]] \
            or [section("_No inquiry matches._")]
    return blocks


# --------------------------------------------------------------------------------------------
# Response targets (intake.sla): due fields, reminders, escalations, the daily digest and the
# weekly report. Mentions are only ever built from IDs we hold (assignee, configured groups).


def due_text(due: dt.datetime, overdue: bool, *, inline: bool = False) -> str:
    """``*Overdue*`` (the target passed) or when the response is due, for a card field or a row."""
    if overdue:
        return f":rotating_light: *Overdue* since {slack_date(due)}" if inline else \
            f"*Response due*\n:rotating_light: *Overdue* (was due {slack_date(due)})"
    return f"due {slack_date(due)}" if inline else f"*Response due*\n{slack_date(due)}"


def _who_to_tell(assignee: str | None, group: str | None) -> str:
    return user_mention(assignee) or usergroup_mention(group) or "Nobody has claimed it yet"


def sla_reminder_line(*, inquiry_id: int, due_at: dt.datetime, assignee: str | None,
                      oncall_group: str | None, show_id: bool = False) -> Message:
    """Before the target: the assignee (or the on-call group when nobody has it) is reminded."""
    prefix = f"#{inquiry_id} · " if show_id else ""
    who = _who_to_tell(assignee, oncall_group)
    line = f"{prefix}:alarm_clock: {who}: a reply to this inquiry is due {slack_date(due_at)}."
    return Message(text=line, blocks=[section(line)])


def sla_escalation_line(*, inquiry_id: int, due_at: dt.datetime, assignee: str | None,
                        escalation_group: str | None, oncall_group: str | None,
                        show_id: bool = False) -> Message:
    """At the target: the card turns Overdue and the escalation group is told."""
    prefix = f"#{inquiry_id} · " if show_id else ""
    notify = " ".join(m for m in (usergroup_mention(escalation_group),
                                  _who_to_tell(assignee, oncall_group if not escalation_group else None)) if m)
    line = (f"{prefix}:rotating_light: *Overdue*: the reply to #{inquiry_id} was due "
            f"{slack_date(due_at)} and nobody has answered by email. {notify}")
    return Message(text=line, blocks=[section(line)])


def sla_digest(*, overdue: Sequence[InquiryRow], unassigned: Sequence[InquiryRow],
               waiting: Sequence[InquiryRow], waiting_days: int, max_rows: int = 10) -> Message | None:
    """The daily digest: what needs a person today, oldest first; None on a day with nothing."""
    sections = [
        (":rotating_light: Overdue", overdue),
        (":inbox_tray: Unassigned", unassigned),
        (f":hourglass_flowing_sand: Waiting on the applicant for over {waiting_days} days", waiting),
    ]
    if not any(rows for _, rows in sections):
        return None
    blocks: list[dict[str, Any]] = [header("Daily digest")]
    summary = []
    for title, rows in sections:
        if not rows:
            continue
        summary.append(f"{len(rows)} {title.split(' ', 1)[1].lower()}")
        blocks.append(section(f"*{title} ({len(rows)})*"))
        blocks += [section(row_text(r)) for r in list(rows)[:max_rows]]
        if len(rows) > max_rows:
            blocks.append(context(f"…and {len(rows) - max_rows} more (`intake due` lists them all)."))
    text = "Daily digest: " + escape_trim(", ".join(summary), 500)
    return Message(text=text, blocks=fit_message(blocks))


@dataclass(frozen=True)
class WeeklyReportData:
    since: dt.date
    until: dt.date
    received: int
    by_category: Sequence[tuple[str, int]]
    median_hours: float | None
    p90_hours: float | None
    targets_met_pct: float | None
    open_now: int
    overdue_now: int
    oldest_open: Sequence[InquiryRow] = ()


def _hours(value: float | None) -> str:
    return "—" if value is None else f"{value:g} h"


def sla_weekly_report(data: WeeklyReportData) -> Message:
    """Monday's report on the week before; the chart follows in its thread."""
    title = f"Weekly report: {data.since:%a %d %b} – {data.until:%a %d %b %Y}"
    categories = "\n".join(f"• `{escape_trim(name, 64)}`: {n}" for name, n in data.by_category) or "_none_"
    met = "—" if data.targets_met_pct is None else f"{data.targets_met_pct:g}%"
    blocks: list[dict[str, Any]] = [
        header(title),
        {"type": "section", "fields": [
            mrkdwn(f"*Received*\n{data.received}"),
            mrkdwn(f"*First-response targets met*\n{met}"),
            mrkdwn(f"*First response (business hours)*\nmedian {_hours(data.median_hours)} · "
                   f"90th percentile {_hours(data.p90_hours)}"),
            mrkdwn(f"*Open now*\n{data.open_now} ({data.overdue_now} overdue)"),
        ]},
        section(f"*By category*\n{categories}"),
    ]
    if data.oldest_open:
        blocks.append(section("*Oldest open*"))
        blocks += [section(row_text(r)) for r in list(data.oldest_open)[:5]]
    blocks.append(context("Chart in the thread · `intake report --since DATE --until DATE` for any period"))
    return Message(text=title, blocks=fit_message(blocks))


# --------------------------------------------------------------------------------------------
# Erasure (intake.privacy): the placeholder a card becomes, and "Forget this person"

V_FORGET = "forget_person_modal"
FORGET_REFUSAL = ("Only members of the privacy admin group can erase a person "
                  "(`[privacy] admin_usergroup`). Nothing was changed.")


@dataclass(frozen=True)
class ErasedCardData:
    """What a card shows once its inquiry is erased or redacted: ids, when, why; no text."""

    inquiry_ids: Sequence[int]
    reason: str  # "erased" (a person asked) or "redacted" (retention)
    at: dt.datetime | None
    category: str | None = None


def erased_card(data: ErasedCardData) -> Message:
    ids = ", ".join(f"#{i}" for i in data.inquiry_ids) or "#?"
    if data.reason == "redacted":
        line = (f":file_folder: *Inquiry {ids}* was closed long ago: its text, attachments and "
                f"addresses were removed by the retention policy on {slack_date(data.at)}.")
        extra = [f"Category {category_text(data.category, None)}"] if data.category else []
    else:
        line = (f":wastebasket: *Inquiry {ids}* was erased at the person's request on "
                f"{slack_date(data.at)}. Nothing of it is kept.")
        extra = []
    blocks = [section(line)]
    if extra:
        blocks.append(context(*extra))
    return Message(text=f"Inquiry {ids}: {data.reason}", blocks=blocks)


@dataclass(frozen=True)
class ForgetPreviewData:
    inquiry_id: int
    address: str
    inquiries: Sequence[int]
    messages: int
    attachments: int
    messages_elsewhere: int


def forget_modal(data: ForgetPreviewData, private_metadata: str) -> dict[str, Any]:
    """The confirmation: who, and what goes. The address is shown so the admin checks it."""
    ids = ", ".join(f"#{i}" for i in list(data.inquiries)[:30]) + ("…" if len(data.inquiries) > 30 else "")
    lines = [
        f"Erase everything held about *{escape_trim(data.address, 320)}*?",
        f"• {len(data.inquiries)} inquir{'y' if len(data.inquiries) == 1 else 'ies'}: {ids or 'none'}",
        f"• {data.messages} message{'s' if data.messages != 1 else ''} and {data.attachments} "
        f"attachment{'s' if data.attachments != 1 else ''}"
        + (f", {data.messages_elsewhere} in other people's conversations" if data.messages_elsewhere else ""),
        "• their address and name wherever else they appear",
    ]
    blocks = [
        section("\n".join(lines)),
        context("Their cards become a placeholder and the thread lines that quote them are deleted. "
                "Only an audit entry with a keyed hash of the address remains. *This cannot be undone.*"),
    ]
    return modal("Forget this person", blocks, callback_id=V_FORGET, submit="Erase",
                 private_metadata=private_metadata)


def notice_modal(title: str, text: str) -> dict[str, Any]:
    """A modal that only says something (a refusal, progress, a result)."""
    return modal(title, [section(escape_trim(text, MAX_SECTION_TEXT))], callback_id="notice")
