"""The inquiry domain: store a message, thread it, classify it, and every staff action after.

It knows the store and the mail layer, and nothing about Flask or Slack. Every function takes an
open ``Session``; the caller owns the transaction (one per request or job). What a change owes
the outside world (cards, thread lines, emails) is recorded as events in the same transaction and
delivered by the outbox (intake/outbox/).

- ``store``: raw bytes first (the webhook's hot path);
- ``threads``: which inquiry a message continues;
- ``processing``: parse, thread, classify one stored message;
- ``lifecycle``: statuses, allowed moves, staff actions;
- ``queries``: what the CLI and Slack read.
"""

from intake.inquiries.common import QUIET_CATEGORIES, SYSTEM, InquiryNotFound, InvalidAction, get_inquiry
from intake.inquiries.lifecycle import (
    ALLOWED,
    StaleCard,
    Status,
    add_note,
    assign,
    claim,
    close,
    mark_not_spam,
    mark_spam,
    on_follow_up,
    on_reply_sent,
    reclassify,
    reopen,
    wait_on_applicant,
)
from intake.inquiries.processing import (
    ARRIVAL_FROM_DATE,
    Prepared,
    ProcessResult,
    arrival_time,
    claim_received,
    prepare,
    process_message,
    process_messages,
    record_failure,
    result_for,
    waiting_messages,
)
from intake.inquiries.queries import count_inquiries, inquiry_detail, inquiry_summary, list_inquiries, search_inquiries
from intake.inquiries.store import (
    StoreResult,
    dedupe_key_for,
    record_receipt,
    store_many,
    store_raw,
    synthesize_message,
)
from intake.inquiries.threads import FALLBACK_THREAD_WINDOW, find_thread, find_threads, is_participant

__all__ = [
    "ALLOWED", "FALLBACK_THREAD_WINDOW", "InquiryNotFound", "InvalidAction", "ProcessResult",
    "QUIET_CATEGORIES", "SYSTEM", "StaleCard", "Status", "StoreResult", "add_note", "assign", "claim",
    "claim_received", "close", "count_inquiries", "dedupe_key_for", "find_thread", "find_threads", "get_inquiry",
    "inquiry_detail", "inquiry_summary", "Prepared", "prepare", "process_messages", "record_failure", "result_for",
    "waiting_messages",
    "is_participant", "list_inquiries", "mark_not_spam", "mark_spam", "on_follow_up", "on_reply_sent",
    "process_message", "reclassify", "record_receipt", "reopen", "search_inquiries", "store_many", "store_raw",
    "synthesize_message",
    # response targets (intake.sla)
    "ARRIVAL_FROM_DATE", "arrival_time", "wait_on_applicant",
]
