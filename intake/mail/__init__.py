"""The mail layer: raw RFC 822 bytes -> ParsedEmail, free of Flask, Slack and the database."""

from .bodies import html_to_text
from .headers import looks_like_message, normalize_address, not_mail_reason, peek_message_id
from .parser import parse
from .replies import latest_reply
from .subjects import Ticket, find_ticket, find_ticket_token, thread_subject
from .types import (
    Address,
    AutomationSignals,
    NotAMessage,
    ParsedAttachment,
    ParsedEmail,
    UnparseableMessage,
)

__all__ = [
    "Address",
    "AutomationSignals",
    "NotAMessage",
    "ParsedAttachment",
    "ParsedEmail",
    "UnparseableMessage",
    "Ticket",
    "find_ticket",
    "find_ticket_token",
    "html_to_text",
    "latest_reply",
    "looks_like_message",
    "normalize_address",
    "not_mail_reason",
    "parse",
    "peek_message_id",
    "thread_subject",
]
