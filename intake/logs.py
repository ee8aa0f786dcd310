"""Logging for every process intake runs: one place that reads ``INTAKE_LOG_LEVEL``.

A command chooses a default (the CLI shows intake's own INFO lines, such as "Slack is off; would
post card" or "SMTP_URL is unset: not sending", because they are what a newcomer needs to see;
``intake worker`` and ``intake serve`` show every INFO line, so each job is visible). The
operator's ``INTAKE_LOG_LEVEL`` wins over any default and is read before anything is logged.

Alembic is kept at WARNING whatever the level: its INFO lines ("setup plugin ...", "Context impl
SQLiteImpl") say nothing an operator can act on, and `intake db upgrade` reports the revision
itself.
"""

from __future__ import annotations

import logging
import os
import sys

LEVEL_ENV = "INTAKE_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
CLI_FORMAT = "%(levelname)s %(name)s: %(message)s"
SERVER_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
QUIET_LOGGERS = ("alembic",)


class LogLevelError(ValueError):
    """``INTAKE_LOG_LEVEL`` is not a level name; the message lists the valid ones."""


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted.

    click's test runner (and tqdm's logging redirect) swap ``sys.stderr``; a handler that kept
    the stream it was built with would write to a closed one afterwards.
    """

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def env_level(env: dict[str, str] | None = None) -> str | None:
    """The level ``INTAKE_LOG_LEVEL`` asks for, upper-cased, or None when it is unset."""
    raw = (os.environ if env is None else env).get(LEVEL_ENV, "").strip()
    if not raw:
        return None
    level = raw.upper()
    if level not in LEVELS:
        raise LogLevelError(f"{LEVEL_ENV} must be one of {', '.join(LEVELS)}; got {raw!r}")
    return level


def configure(*, intake_level: str, other_level: str = "WARNING", fmt: str = CLI_FORMAT,
              verbose: bool = False) -> None:
    """Send log lines to stderr: intake's own loggers at ``intake_level``, everyone else's at
    ``other_level``; ``INTAKE_LOG_LEVEL`` (when set) replaces both, and ``verbose`` (the CLI's
    ``-v``) means at least INFO for everything.

    Called again (the CLI group, then `intake worker`), it replaces what it set up before and
    leaves other handlers alone (pytest's capture, for one).
    """
    level = env_level()
    if verbose and level != "DEBUG":
        level = "INFO"
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level or other_level)
    logging.getLogger("intake").setLevel(level or intake_level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
