"""Slack and SMTP stand-ins for the pipeline benchmark, in a process of their own.

    python bench/standins.py      # prints {"slack": URL, "smtp": URL} on one line, then serves

The fake Slack Web API (tests/fakeslack.py, real HTTP) and an aiosmtpd server (tests/smtp_servers.py)
run here rather than in the benchmark's process, so the worker being measured does not share its
interpreter (and its GIL) with the servers it talks to. Each line read on stdin is answered with
the counts so far (``{"chat.postMessage": N, "chat.update": N, "smtp": N}``); end of input stops it.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fakeslack import FakeSlack  # noqa: E402
from tests.smtp_servers import Recorder, plain_server  # noqa: E402


class CountingRecorder(Recorder):
    """Counts accepted messages instead of keeping them (a long run would hold them all)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.count += 1
        return "250 OK"


def main() -> None:
    recorder = CountingRecorder()
    with FakeSlack() as slack, plain_server(recorder=recorder) as smtp:
        print(json.dumps({"slack": slack.api_url, "smtp": smtp.url(starttls="never")}), flush=True)
        for _line in sys.stdin:
            with slack._lock:
                counts = Counter(call.method for call in slack.calls if call.status == 200)
                slack.calls.clear()  # counted; the stored messages stay for chat.update
            print(json.dumps({**counts, "smtp": recorder.count}), flush=True)


if __name__ == "__main__":
    main()
