"""Outbound email: staff replies, auto-acknowledgments, suggested answers, loop safety.

Public API (see docs/outbound.md):
- :func:`queue_reply` / :func:`send_reply`: a staff reply as a queued outbound message.
- outbox deliverers ``email.send`` and ``email.acknowledge`` (intake/outbound/deliveries.py).
- :func:`suggest_answer` -> :class:`Suggestion`; :func:`reply_templates`.
- :func:`smtp_settings` for ``SMTP_URL``.
"""

from intake.outbound.acknowledge import AckResult, acknowledge
from intake.outbound.compose import InvalidAddress, header_text, reply_subject, validate_address
from intake.outbound.knowledge import Suggestion, suggest_answer
from intake.outbound.options import OutboundConfigError, load_options
from intake.outbound.replies import ReplyError, queue_reply, send_reply
from intake.outbound.sending import send_message
from intake.outbound.smtp import DeliveryError, SmtpSettings, smtp_settings
from intake.outbound.templates import render, reply_templates

__all__ = [
    "AckResult",
    "DeliveryError",
    "InvalidAddress",
    "OutboundConfigError",
    "ReplyError",
    "SmtpSettings",
    "Suggestion",
    "acknowledge",
    "header_text",
    "load_options",
    "queue_reply",
    "reply_subject",
    "reply_templates",
    "render",
    "send_message",
    "send_reply",
    "smtp_settings",
    "suggest_answer",
    "validate_address",
]
