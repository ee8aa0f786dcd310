"""The one escaping helper for untrusted text (email subjects, bodies, names, staff notes).

Slack's mrkdwn gives meaning to exactly three characters: ``&``, ``<`` and ``>``. Escaping those
(and nothing else, as Slack's formatting guide says) turns ``<!channel>``, ``<@U123>`` and
``<http://evil|bank.com>`` into inert text, so an email can never ping anyone or show a link whose
label lies about its target. Every builder routes untrusted text through :func:`escape`; text that
goes into ``plain_text`` objects is never parsed by Slack and only needs trimming (:func:`trim`).
"""

from __future__ import annotations

import re

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
ELLIPSIS = "…"
_SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


def escape(text: object) -> str:
    """Untrusted text made safe for a mrkdwn field: ``&``, ``<`` and ``>`` become entities."""
    if text is None:
        return ""
    return str(text).translate(_ESCAPES)


def cut_escaped(escaped: str, limit: int) -> str:
    """Trim already-escaped text to ``limit`` characters without splitting an entity.

    Escaping lengthens text (``<`` becomes four characters), so limits apply after escaping; a cut
    through ``&amp;`` would leave a stray ``&`` that Slack could misread.
    """
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: max(0, limit - len(ELLIPSIS))]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + ELLIPSIS


def escape_trim(text: object, limit: int) -> str:
    """Escape untrusted text for mrkdwn, then trim it to ``limit`` characters."""
    return cut_escaped(escape(text), limit)


def trim(text: object, limit: int) -> str:
    """Text for a plain_text object (never parsed by Slack), trimmed to ``limit`` characters."""
    if text is None:
        return ""
    text = str(text)
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ELLIPSIS))] + ELLIPSIS


def user_mention(user_id: str | None) -> str:
    """``<@U123>`` for a Slack user ID we hold, or escaped text when it is not a well-formed ID.

    Assignees and actors come from Slack payloads, but they are stored in the database; checking
    the shape means a tampered row can never become ``<!channel>``.
    """
    if not user_id:
        return ""
    if _SLACK_USER_ID.match(user_id):
        return f"<@{user_id}>"
    return escape(user_id)


_SLACK_USERGROUP_ID = re.compile(r"^S[A-Z0-9]{2,20}$")


def usergroup_mention(group_id: str | None) -> str:
    """``<!subteam^S123>`` for a well-formed user group ID from the settings, else ``""``: the
    only way our own text notifies a group, and never built from anything an email said."""
    if group_id and _SLACK_USERGROUP_ID.match(group_id):
        return f"<!subteam^{group_id}>"
    return ""
