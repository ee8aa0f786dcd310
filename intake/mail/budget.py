"""A per-message time allowance for parsing, checked between steps.

Every step of ``parse()`` is bounded on its own (input caps, linear parsers: see
docs/benchmarks.md, "Hostile input"), so a message cannot take long by design. The budget is the
net for what that audit missed: once a message has used its allowance, the remaining optional
steps (HTML conversion with layout, quote and signature removal, further MIME parts) are skipped,
the message is kept as *partially parsed* with a defect saying what was skipped, and the worker
moves on. A Python thread cannot interrupt a running regular expression or C parser, so the
check happens between steps, never inside one.
"""

from __future__ import annotations

import time

# Wall-clock seconds a message may spend in parse() before optional steps are skipped. Ordinary
# mail takes about a millisecond; the slowest hostile input measured takes well under a second.
PARSE_BUDGET_SECONDS = 5.0


class Budget:
    """Time left for one message; ``None`` seconds means unlimited (tools, benchmarks)."""

    def __init__(self, seconds: float | None = PARSE_BUDGET_SECONDS,
                 clock=time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._deadline = None if seconds is None else clock() + seconds
        self.skipped: list[str] = []  # the steps left out, for the message's defects

    def spent(self) -> bool:
        return self._deadline is not None and self._clock() >= self._deadline

    def skip(self, what: str) -> None:
        """Record a step left out because the budget was spent."""
        self.skipped.append(f"parse time budget of {self.seconds:g} s spent: {what}")
