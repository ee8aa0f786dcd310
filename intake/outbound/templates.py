"""Saved replies for the Slack reply modal and acknowledgment texts, with safe placeholders.

Placeholders are ``{name}`` for a fixed set of keys (``first_name``, ``name``, ``subject``,
``inquiry_id``, ``reference``, ``answer``, ``program``). They are substituted with a regex over
the known keys only, not ``str.format``: an operator's template may contain other braces, and no
value (all of them may come from an applicant) is ever interpreted as a template itself.
"""

from __future__ import annotations

import re
from typing import Mapping

from intake.config import Settings

PLACEHOLDER_RE = re.compile(r"\{(first_name|name|subject|inquiry_id|reference|answer|program)\}")

DEFAULT_ACK_TEMPLATE = """Hello {first_name},

Thank you for writing to us. This is an automatic confirmation that we received your message \
"{subject}" and a member of our team will answer it personally, usually within two working days.
{answer}
If you write again about the same question, please reply to this email so that it reaches the \
same person (your reference is {reference}).

The fellowship team"""

DEFAULT_ACK_TEMPLATES: dict[str, str] = {
    "default": DEFAULT_ACK_TEMPLATE,
    "press": """Hello {first_name},

Thank you for your press inquiry "{subject}". Our communications team has it and will answer \
you as soon as possible; if you are on a deadline, please reply with it (reference {reference}).

The fellowship team""",
}

# (name, category or None for every category, body)
DEFAULT_REPLY_TEMPLATES: tuple[tuple[str, str | None, str], ...] = (
    ("Thanks, we're on it", None,
     "Hello {first_name},\n\nThank you for your message. We are looking into it and will get back "
     "to you shortly.\n\nBest regards,\nThe fellowship team"),
    ("Need more details", None,
     "Hello {first_name},\n\nThank you for reaching out. Could you tell us a little more so that "
     "we can help? \n\nBest regards,\nThe fellowship team"),
    ("Application: see the FAQ", "application",
     "Hello {first_name},\n\nThank you for your interest in the fellowship. Most questions about "
     "eligibility, dates and the stipend are answered on our Apply page and FAQ. If yours is not, "
     "just reply to this email.\n\nBest regards,\nThe fellowship team"),
    ("Status: still in review", "applicant_status",
     "Hello {first_name},\n\nThank you for checking in. Your application is still being reviewed; "
     "every applicant hears from us by email once decisions are made.\n\nBest regards,\n"
     "The fellowship team"),
    ("Partnership: schedule a call", "partnership",
     "Hello {first_name},\n\nThank you for your interest in hosting fellows. Our partnerships team "
     "would love to learn more; could you suggest two or three times for a 30-minute call?\n\n"
     "Best regards,\nThe fellowship team"),
    ("Press: forwarded to comms", "press",
     "Hello {first_name},\n\nThank you for reaching out. I have passed your request to our "
     "communications team, who will contact you directly.\n\nBest regards,\nThe fellowship team"),
    ("Vendor: not at this time", "vendor",
     "Hello,\n\nThank you for your message. We are not looking for new services at this time.\n\n"
     "Best regards,\nThe fellowship team"),
)


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill known placeholders; an unknown or missing one is left as written or made empty."""
    return PLACEHOLDER_RE.sub(lambda m: str(values.get(m.group(1), "")), template)


def first_name(display_name: str | None) -> str:
    """A friendly greeting name: the first word of the display name, or "there"."""
    if not display_name:
        return "there"
    name = display_name.strip().strip("\"'")
    surname, comma, rest = name.partition(",")
    # "Doe, Jane" is surname first; "Daniel Reyes, Office of Innovation" is a name and a title.
    if comma and len(surname.split()) == 1:
        name = rest
    word = name.split()[0] if name.split() else ""
    return word if word and "@" not in word else "there"


def reply_templates(settings: Settings, category: str | None) -> list[tuple[str, str]]:
    """Saved replies ``(name, body)`` for a category: general ones first, then its own.

    From ``[[templates]]`` tables in INTAKE_CONFIG (``name``, optional ``category``, ``body``);
    the built-in set when the operator wrote none. Bodies still hold their placeholders; the
    modal fills them with :func:`render`.
    """
    configured = settings.toml.get("templates")
    rows: list[tuple[str, str | None, str]]
    if isinstance(configured, list) and configured:
        rows = [
            (str(t["name"]), (str(t["category"]) if t.get("category") else None), str(t["body"]))
            for t in configured
            if isinstance(t, Mapping) and t.get("name") and t.get("body")
        ]
    else:
        rows = list(DEFAULT_REPLY_TEMPLATES)
    general = [(n, b) for n, c, b in rows if c in (None, "*")]
    specific = [(n, b) for n, c, b in rows if c not in (None, "*") and c == category]
    return general + specific


def ack_template(templates: Mapping[str, str], category: str | None) -> str:
    """The operator's template for the category, else their default; ours when they wrote none."""
    chosen = templates if templates else DEFAULT_ACK_TEMPLATES
    if category and category in chosen:
        return chosen[category]
    return chosen.get("default", DEFAULT_ACK_TEMPLATE)
