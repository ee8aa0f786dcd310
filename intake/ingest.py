"""What `intake ingest` does with the files it is given: read them, store them a chunk per
transaction, process them through the workers' batch path, deliver what that owes in batches.

The command used to store, process and deliver one file at a time: a commit per file, a
processing transaction per file and, after each, the card, its thread line and the
acknowledgment, each planned and delivered on its own (a card owed again by a follow-up was
planned again). At 40 files a second that was most of an import's time (docs/benchmarks.md).

Now, per chunk (``CHUNK_FILES`` files or ``CHUNK_BYTES`` bytes, whichever comes first):

1. the files are checked for being mail with no transaction open;
2. every file is stored, with its receipt, in one transaction; the commit makes the chunk
   durable before any of it is processed or reported (a crash after it loses nothing: a rerun
   finds the bytes stored, reports them ``duplicate`` and processes those never processed);
3. the stored messages go through ``pipeline.process_batch``, the worker's batch path (parsed
   with no transaction open, then threaded, classified and recorded a batch per transaction),
   from the bytes already in memory;
4. what those commits owed (cards, thread lines, acknowledgments) is handed to the outbox every
   ``DELIVER_EVERY`` messages and at the end (``HeldDeliveries``), so a card owed by a new
   inquiry and again by its follow-ups is planned and delivered once (``slack.card`` is
   coalescing) and every lane's rows are claimed, acted on and recorded several per statement.

A chunk's results are printed once its messages are processed.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

# A chunk is stored in one transaction and then processed. Large enough that commits, the
# classifier's call and the deliveries are shared by many files; small enough that results show
# up steadily and a chunk's bytes are a modest amount of memory.
CHUNK_FILES = 250
CHUNK_BYTES = 64 * 1024 * 1024
# Messages processed per transaction within a chunk (SQLite's write lock is held that long).
PROCESS_BATCH = 50
# What the processed messages owe is delivered after this many (see HeldDeliveries).
DELIVER_EVERY = 1000


@dataclass
class Item:
    """One message to ingest, or the reason it cannot be (``rejected``)."""

    label: str
    raw: bytes | None
    size: int
    rejected: str | None = None


# ------------------------------------------------------------------------------------------
# reading the paths


def _looks_like_mbox(head: bytes) -> bool:
    return head.startswith(b"From ") and b"\n" in head


def _iter_file(path: Path, max_bytes: int) -> Iterator[Item]:
    size = path.stat().st_size
    if size > max_bytes:
        yield Item(str(path), None, size, f"too large: {size} bytes (limit {max_bytes})")
        return
    with path.open("rb") as fh:
        head = fh.read(1024)
    if _looks_like_mbox(head):
        yield from _iter_mbox(path, max_bytes)
        return
    yield Item(str(path), path.read_bytes(), size)


def _iter_mbox(path: Path, max_bytes: int) -> Iterator[Item]:
    import mailbox

    box = mailbox.mbox(str(path), create=False)
    try:
        for index, key in enumerate(box.iterkeys(), start=1):
            raw = box.get_bytes(key)
            label = f"{path}#{index}"
            if len(raw) > max_bytes:
                yield Item(label, None, len(raw), f"too large: {len(raw)} bytes (limit {max_bytes})")
            else:
                yield Item(label, raw, len(raw))
    finally:
        box.close()


def _iter_stdin(max_bytes: int) -> Iterator[Item]:
    data = sys.stdin.buffer.read(max_bytes + 1)
    if len(data) > max_bytes:
        yield Item("-", None, len(data), f"too large: over {max_bytes} bytes")
        return
    if _looks_like_mbox(data[:1024]):
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".mbox") as tmp:
            tmp.write(data)
            tmp.flush()
            for item in _iter_mbox(Path(tmp.name), max_bytes):
                item.label = "-" + item.label[len(tmp.name):]
                yield item
        return
    yield Item("-", data, len(data))


def expand(paths: Iterable[str]) -> list[Path | str]:
    """The files named by ``paths``: directories walked (hidden entries skipped), ``-`` kept."""
    expanded: list[Path | str] = []
    for raw_path in paths:
        if raw_path == "-":
            expanded.append("-")
            continue
        path = Path(raw_path)
        if path.is_dir():
            expanded.extend(
                sorted(
                    p for p in path.rglob("*")
                    if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        else:
            expanded.append(path)
    return expanded


def items_of(target: Path | str, max_bytes: int) -> Iterator[Item]:
    """The messages in one target (a file, an mbox, ``-``); an unreadable file is one rejected item."""
    if target == "-":
        yield from _iter_stdin(max_bytes)
        return
    try:
        yield from _iter_file(target, max_bytes)
    except OSError as exc:
        yield Item(str(target), None, 0, f"cannot read: {exc.strerror or exc}")


def chunks(items: Iterable[tuple[Item, Any]], *, files: int | None = None,
           max_bytes: int | None = None) -> Iterator[list[tuple[Item, Any]]]:
    """``(item, tag)`` pairs grouped into chunks of at most ``files`` items and about
    ``max_bytes`` bytes (default ``CHUNK_FILES``, ``CHUNK_BYTES``); a chunk always holds at
    least one item."""
    files = files or CHUNK_FILES
    max_bytes = max_bytes or CHUNK_BYTES
    chunk: list[tuple[Item, Any]] = []
    size = 0
    for pair in items:
        if chunk and (len(chunk) >= files or size + pair[0].size > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(pair)
        size += pair[0].size
    if chunk:
        yield chunk


# ------------------------------------------------------------------------------------------
# storing and processing a chunk


def ingest_chunk(rt: "Runtime", items: list[Item], *, received_from_date: bool = False) -> list[dict]:
    """Store these items in one transaction, process what was stored, and return one result
    per item, in order: the object `intake ingest --json` prints.

    Raises ``NotProcessed`` (after the rest is processed) naming the stored messages whose
    processing failed: they are stored and committed, and a rerun or the worker's sweeper
    processes them.
    """
    from intake import inquiries, mail
    from intake.pipeline import process_batch

    for item in items:
        if item.rejected is None and item.raw is not None:
            # A file handed over by mistake (a Procfile, pyproject.toml) must not become an
            # inquiry: webhooks store whatever was delivered, but here a person picked the files.
            item.rejected = mail.not_mail_reason(item.raw)
    meta = dict(inquiries.ARRIVAL_FROM_DATE) if received_from_date else None
    accepted = [index for index, item in enumerate(items) if item.rejected is None]
    with rt.db.session() as session:
        for item in items:
            if item.rejected is not None:
                inquiries.record_receipt(session, "cli", "rejected", size=item.size,
                                         detail=f"{item.label}: {item.rejected}")
        stored = dict(zip(accepted, inquiries.store_many(
            session, [(items[i].raw, items[i].label[:255]) for i in accepted], provider="cli", meta=meta)))
    # Committed: everything below may fail without losing a file.

    # New messages, and duplicates stored earlier but never processed (a crash), once each.
    todo: dict[int, tuple[int, bytes, dict | None]] = {}
    for index, result in stored.items():
        if (not result.duplicate or result.inquiry_id is None) and result.message_id not in todo:
            todo[result.message_id] = (result.message_id, items[index].raw, meta)
    processed: dict[int, inquiries.ProcessResult] = {}
    waiting = list(todo.values())
    for start in range(0, len(waiting), PROCESS_BATCH):
        for done in process_batch(rt, waiting[start:start + PROCESS_BATCH], None):
            processed[done.message_id] = done
    missing = [message_id for message_id in todo if message_id not in processed]
    errors: dict[int, str | None] = {}
    if missing or any(done.status == "unparseable" for done in processed.values()):
        errors = _outcomes_read_back(rt, [*missing, *(d.message_id for d in processed.values()
                                                       if d.status == "unparseable")], processed)

    results: list[dict] = []
    failed: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        result = {"file": item.label, "status": None, "inquiry": None, "error": None}
        if item.rejected is not None:
            result.update(status="rejected", error=item.rejected)
            results.append(result)
            continue
        store = stored[index]
        done = processed.get(store.message_id)
        inquiry_id = store.inquiry_id or (done.inquiry_id if done is not None else None)
        if inquiry_id is None:
            failed.append((item.label, errors.get(store.message_id) or "not processed"))
            continue
        if store.duplicate:
            result.update(status="duplicate", inquiry=inquiry_id)
        else:
            result.update(status=done.status, inquiry=inquiry_id)
            if done.status == "unparseable":
                result["error"] = errors.get(store.message_id)
        results.append(result)
    if failed:
        raise NotProcessed(results, failed)
    return results


class NotProcessed(Exception):
    """Some stored messages of a chunk could not be processed; ``results`` are the others'."""

    def __init__(self, results: list[dict], failed: list[tuple[str, str]]) -> None:
        super().__init__(f"{len(failed)} stored message(s) not processed")
        self.results = results
        self.failed = failed


def _outcomes_read_back(rt: "Runtime", message_ids: list[int],
                        processed: dict[int, Any]) -> dict[int, str | None]:
    """For messages the batch left out (another process took them, or they failed) and for
    unparseable ones: what the database says. Fills ``processed`` for those done elsewhere and
    returns the parse error (unparseable) or the last processing error (failed), by id."""
    from sqlalchemy import select

    from intake import inquiries
    from intake.models import Message

    found: dict[int, str | None] = {}
    with rt.db.read_session() as session:
        for message_id in message_ids:
            if message_id not in processed:
                done = inquiries.result_for(session, message_id)
                if done is not None:
                    processed[message_id] = done
        rows = session.execute(
            select(Message.id, Message.parse_error, Message.last_error).where(Message.id.in_(message_ids))
        ).all()
    for row in rows:
        found[row.id] = row.parse_error if row.id in processed else row.last_error
    return found


# ------------------------------------------------------------------------------------------
# deliveries, a chunk at a time


class HeldDeliveries:
    """Holds back what commits owe (instead of delivering after each commit) and hands it to the
    outbox every ``every`` messages and when the block ends: the rows are claimed, delivered and
    recorded several per statement, and a card owed several times meanwhile (a new inquiry, then
    its follow-ups) is planned and delivered once, showing its latest state. The rows are
    committed either way: if the command dies before a flush, a worker's poller delivers them.
    """

    def __init__(self, rt: "Runtime", every: int = DELIVER_EVERY) -> None:
        self.rt = rt
        self.every = every
        self.held: list = []
        self.messages = 0
        self._deliver = rt.db.on_owed

    def __enter__(self) -> "HeldDeliveries":
        self.rt.db.on_owed = self.held.extend
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.rt.db.on_owed = self._deliver
        if exc_type is None:  # on an error the poller delivers them
            self.flush()

    def processed(self, count: int) -> None:
        """``count`` more messages were processed: deliver what is held once there are enough."""
        self.messages += count
        if self.messages >= self.every:
            self.flush()

    def flush(self) -> None:
        from intake.outbox.worker import kick

        held = list(self.held)
        self.held.clear()  # in place: ``on_owed`` is bound to this list while holding
        self.messages = 0
        if not held:
            return
        # What the deliveries themselves owe (an acknowledgment's email) goes the usual way:
        # it joins the running delivery job of its lane.
        holding, self.rt.db.on_owed = self.rt.db.on_owed, self._deliver
        try:
            kick(self.rt, held)
        finally:
            self.rt.db.on_owed = holding
