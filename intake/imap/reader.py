"""One pass over one mailbox: find what is new, store it, hand it on, then move or flag it.

The order is what makes it exactly once:

1. fetch a batch of messages (``BODY.PEEK[]``: a person's unread mail stays unread), at most
   ``BATCH_BYTES`` at a time;
2. in one transaction: each message's raw bytes through ``inquiries.store_raw`` (the webhooks'
   function, so a byte-identical copy is recognised as a duplicate) and its
   ledger row; commit;
3. hand each new message to processing (``hand_to_processing``);
4. move the batch to ``?processed=`` or flag it with the keyword, then mark the rows done.

A crash after 2 leaves ledger rows ``stored``: the next pass re-reads those UIDs (a message the
server changed under the same UID would be stored, not lost; the same bytes are a duplicate)
and finishes step 4. A crash before 2 commits nothing, so the UIDs are read again. A changed
UIDVALIDITY voids every UID the ledger knows: the whole folder is read again and ``store_raw``
recognises what was already stored.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from intake import inquiries
from intake.imap import ledger
from intake.imap.settings import Mailbox

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

PROVIDER = "imap"
BATCH_SIZE = 50
# A batch's bodies are fetched and committed in groups of at most this many bytes, so memory
# and the length of a write transaction stay bounded whatever the messages weigh.
BATCH_BYTES = 16 * 1024 * 1024
DELETED = b"\\Deleted"


class ImapReadError(Exception):
    """The server answered, but not with what was asked; the pass stops and is retried."""


def hand_to_processing(rt: "Runtime", message_id: int) -> None:
    """Start processing a stored message, exactly as the webhooks do.

    The one place the reader hands work on. A failure here loses nothing: the message is
    committed and the sweeper enqueues messages left in ``received``.
    """
    from intake.pipeline import process_message_job

    try:
        process_message_job.enqueue(rt, message_id)
    except Exception:  # noqa: BLE001 - stored and committed: the sweeper will enqueue it
        log.exception("enqueue of message %s failed; the sweeper will pick it up", message_id)


@dataclass
class PassReport:
    mailbox: str
    uidvalidity: int = 0
    stored: int = 0
    duplicates: int = 0
    skipped: int = 0  # refused and left in place (too large)
    gone: int = 0  # deleted on the server between SEARCH and FETCH
    settled: int = 0  # moved or flagged
    reread_reason: str | None = None
    message_ids: list[int] = field(default_factory=list)

    @property
    def seen(self) -> int:
        """Messages this pass dealt with in any way."""
        return self.stored + self.duplicates + self.skipped + self.gone

    def summary(self) -> str:
        text = (f"{self.mailbox}: {self.stored} stored, {self.duplicates} duplicate, "
                f"{self.skipped} skipped, {self.gone} gone")
        return text + (f" ({self.reread_reason})" if self.reread_reason else "")


class MailboxReader:
    """Reads one folder over an authenticated connection; one pass per ``run_pass``."""

    def __init__(self, rt: "Runtime", mailbox: Mailbox, client: IMAPClient, *,
                 batch_size: int = BATCH_SIZE,
                 handoff: Callable[["Runtime", int], None] = hand_to_processing) -> None:
        self.rt = rt
        self.mailbox = mailbox
        self.client = client
        self.batch_size = batch_size
        self.handoff = handoff
        self._processed_folder_ready = False

    # -- the pass ---------------------------------------------------------------------------

    def run_pass(self, *, since: dt.date | None = None,
                 progress: Callable[[int, int], None] | None = None) -> PassReport:
        """Store everything new in the folder (or, for a backfill, everything since ``since``).

        ``progress(done, total)`` is called after each batch.
        """
        self._ensure_processed_folder()
        selected = self.client.select_folder(self.mailbox.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        report = PassReport(self.mailbox.name, uidvalidity)
        with self.rt.db.read_session() as session:
            point = ledger.resume_point(session, self.mailbox.name, uidvalidity)
            settled = ledger.settled_uids(session, self.mailbox.name, uidvalidity) if since else set()
        uids = self._candidates(point, since, settled, report)
        total = len(uids)
        if progress:
            progress(0, total)
        for start in range(0, total, self.batch_size):
            self._read_batch(uids[start:start + self.batch_size], uidvalidity, set(point.pending), report)
            if progress:
                progress(min(start + self.batch_size, total), total)
        if report.seen:
            log.info("%s", report.summary())
        return report

    def _candidates(self, point: ledger.ResumePoint, since: dt.date | None, settled: set[int],
                    report: PassReport) -> list[int]:
        if since is not None:
            found = self.client.search(["SINCE", since])
            return sorted(uid for uid in found if uid not in settled)
        if point.validity_changed:
            report.reread_reason = (f"UIDVALIDITY changed from {point.previous_validity} to "
                                    f"{report.uidvalidity}: the folder is read again")
            log.warning("%s: %s", self.mailbox.name, report.reread_reason)
            return sorted(self.client.search("ALL"))
        if point.first_sight and self.mailbox.processed_folder is None:
            # A message that carries the keyword was stored already (by an earlier database of
            # this deployment): the keyword is only ever set after the commit.
            return sorted(self.client.search(["UNKEYWORD", self.mailbox.keyword]))
        if point.first_sight:
            return sorted(self.client.search("ALL"))
        # Resume after the watermark; "N:*" always matches the highest UID, even below N.
        fresh = [uid for uid in self.client.search(["UID", f"{point.watermark + 1}:*"])
                 if uid > point.watermark]
        return sorted(set(fresh) | set(point.pending))

    def _read_batch(self, uids: Sequence[int], uidvalidity: int, pending: set[int],
                    report: PassReport) -> None:
        limit = self.rt.settings.max_message_bytes
        sizes = {uid: int(data[b"RFC822.SIZE"])
                 for uid, data in self._fetch(uids, [b"RFC822.SIZE"]).items() if b"RFC822.SIZE" in data}
        for uid in uids:
            if uid in sizes and sizes[uid] > limit:
                self._skip_too_large(uid, uidvalidity, sizes[uid], limit)
                report.skipped += 1
        wanted = [uid for uid in uids if sizes.get(uid, 0) <= limit]
        for group in _by_bytes(wanted, sizes, BATCH_BYTES):
            self._read_group(group, uidvalidity, pending, report)

    def _read_group(self, uids: list[int], uidvalidity: int, pending: set[int], report: PassReport) -> None:
        """Fetch, store in one transaction, hand on, settle: at most ``BATCH_BYTES`` in memory."""
        bodies = self._fetch(uids, [b"BODY.PEEK[]"])
        present = []
        for uid in uids:
            if b"BODY[]" in bodies.get(uid, {}):
                present.append(uid)
            elif self._exists(uid):
                # The server left it out of an answer without saying why: never skip a message
                # that is still there; the pass stops and the next one retries from here.
                raise ImapReadError(f"{self.mailbox.name}: the server did not return UID {uid}")
            else:
                # Deleted on the server (by a person, another client) since the search.
                report.gone += 1
                log.info("%s: UID %s was deleted on the server before it could be read",
                         self.mailbox.name, uid)
        results = []
        with self.rt.db.session() as session:
            for uid in present:
                event_id = f"{self.mailbox.name};UIDVALIDITY={uidvalidity};UID={uid}"
                stored = inquiries.store_raw(session, bytes(bodies[uid][b"BODY[]"]), provider=PROVIDER,
                                             provider_event_id=event_id[-255:])
                results.append((uid, stored))
            ledger.record(session, self.mailbox.name, uidvalidity,
                          [(uid, stored.message_id) for uid, stored in results], ledger.STORED)
        for _uid, stored in results:  # committed: now it may be handed on
            if stored.duplicate:
                report.duplicates += 1
            else:
                report.stored += 1
                report.message_ids.append(stored.message_id)
                self.handoff(self.rt, stored.message_id)
        self._settle(present)
        # A stored message deleted before it was moved needs nothing more either.
        gone_but_stored = [uid for uid in uids if uid in pending and uid not in present]
        with self.rt.db.session() as session:
            ledger.mark_done(session, self.mailbox.name, uidvalidity, present + gone_but_stored)
        report.settled += len(present)

    def _skip_too_large(self, uid: int, uidvalidity: int, size: int, limit: int) -> None:
        """Refused like a webhook's 413, but left in the mailbox where a person can see it."""
        detail = f"{self.mailbox.name} UID {uid}: {size} bytes; the limit is {limit}; left in the mailbox"
        log.warning("too large to store: %s", detail)
        with self.rt.db.session() as session:
            inquiries.record_receipt(session, PROVIDER, "too_large", size=size, detail=detail)
            ledger.record(session, self.mailbox.name, uidvalidity, [(uid, None)], ledger.SKIPPED)

    # -- server side ------------------------------------------------------------------------

    def _fetch(self, uids: Sequence[int], items: list[bytes]) -> dict[int, dict[bytes, object]]:
        """FETCH; messages expunged meanwhile are simply absent from the result."""
        if not uids:
            return {}
        return self._tolerating_expunged(uids, lambda batch: self.client.fetch(batch, items))

    def _settle(self, uids: list[int]) -> None:
        """Move the stored messages to the processed folder, or flag them in place."""
        if uids:
            self._tolerating_expunged(uids, self._move_or_flag)

    def _move_or_flag(self, uids: list[int]) -> None:
        folder = self.mailbox.processed_folder
        if folder is None:
            self.client.add_flags(uids, [self.mailbox.keyword.encode()], silent=True)
        elif self.client.has_capability("MOVE"):
            self.client.move(uids, folder)
        else:
            # UIDPLUS: expunge exactly these UIDs, never other mail a person marked deleted.
            self.client.copy(uids, folder)
            self.client.add_flags(uids, [DELETED], silent=True)
            self.client.uid_expunge(uids)

    def _tolerating_expunged(self, uids: Sequence[int], command: Callable[[list[int]], dict | None]) -> dict:
        """Run ``command`` on the UIDs; when the server refuses it because some of them were
        expunged meanwhile (Dovecot answers ``NO [EXPUNGEISSUED]`` for the whole command), run it
        UID by UID and leave out the ones that are gone. A lost connection is not retried here."""
        try:
            return command(list(uids)) or {}
        except IMAPClientAbortError:
            raise
        except IMAPClientError:
            if len(uids) > 1:
                found: dict = {}
                for uid in uids:
                    found.update(self._tolerating_expunged([uid], command))
                return found
            if self._exists(uids[0]):
                raise
            return {}

    def _exists(self, uid: int) -> bool:
        return uid in self.client.search(["UID", str(uid)])

    def _ensure_processed_folder(self) -> None:
        folder = self.mailbox.processed_folder
        if folder is None or self._processed_folder_ready:
            return
        if not self.client.folder_exists(folder):
            log.info("%s: creating the processed folder %s", self.mailbox.name, folder)
            self.client.create_folder(folder)
        self._processed_folder_ready = True


def _by_bytes(uids: list[int], sizes: dict[int, int], budget: int) -> list[list[int]]:
    """Consecutive groups of UIDs whose sizes add up to at most ``budget`` (at least one each)."""
    groups: list[list[int]] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if not groups or total + size > budget:
            groups.append([])
            total = 0
        groups[-1].append(uid)
        total += size
    return groups
