"""Header-level helpers: decoding, addresses, Message-IDs, dates, and cheap byte-level checks.

Everything here takes untrusted input and must never raise: a header that cannot be decoded
keeps a best-effort (replacement-decoded) value, and the caller records a defect.
"""

from __future__ import annotations

import base64
import codecs
import datetime as dt
import email.utils
import inspect
import re

from .types import Address

# A Message-ID column holds at most 998 characters (RFC 5322's line limit), so both the cheap
# peek (dedupe) and the full parse cut ids to that length the same way.
MAX_ID_LENGTH = 998

# email.feedparser's own definitions (NLCRE_crack, headerRE), so peek and parse agree.
_LINE = re.compile(rb"([^\r\n]*)(?:\r\n|\r|\n|$)")
_PY_HEADER_LINE = re.compile(rb"^(From |[\041-\071\073-\176]*:|[\t ])")
# Header blocks beyond this are not scanned by peek_message_id (10,000 recipients are ~0.4 MB).
PEEK_LIMIT = 4 * 1024 * 1024
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_ANGLE_ID = re.compile(r"<([^<>]*)>")
_FIELD_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]{1,76}[ \t]*:")
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")

# Header names that show a block of lines really is a mail header (not prose with a colon).
_KNOWN_FIELDS = frozenset(
    b.lower()
    for b in (
        b"from", b"to", b"cc", b"bcc", b"subject", b"date", b"message-id", b"received",
        b"return-path", b"mime-version", b"content-type", b"content-transfer-encoding",
        b"content-disposition", b"delivered-to", b"reply-to", b"sender", b"in-reply-to",
        b"references", b"dkim-signature", b"authentication-results", b"list-id",
        b"precedence", b"auto-submitted", b"envelope-to", b"thread-topic", b"importance",
        b"user-agent", b"organization", b"resent-from", b"resent-to", b"resent-date",
        b"arc-seal", b"received-spf", b"x-mailer", b"x-original-to",
    )
)

# Magic numbers of file types people drop into an inbox folder by mistake.
_BINARY_MAGIC = (
    b"\x89PNG", b"%PDF-", b"PK\x03\x04", b"GIF87a", b"GIF89a", b"\xff\xd8\xff", b"\x1f\x8b",
    b"BZh", b"\xfd7zXZ", b"7z\xbc\xaf", b"Rar!", b"\x7fELF", b"MZ", b"\xd0\xcf\x11\xe0",
    b"OggS", b"RIFF", b"\x00\x00\x01\x00", b"II*\x00", b"MM\x00*", b"SQLite format 3",
)


def clean_text(value: str) -> str:
    """Text any database can store: no NUL (PostgreSQL rejects it) and no lone surrogates
    (left by undecodable bytes; UTF-8 encoders reject them), which become U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
    return value


def unfold(value: str) -> str:
    """RFC 5322 unfolding: a line break followed by whitespace is removed, the whitespace kept."""
    return _FOLD.sub("", value)


def surrogate_bytes(value: str) -> bytes:
    """The original bytes of a header value that email's BytesParser decoded as surrogateescape."""
    return value.encode("utf-8", "surrogateescape")


def decode_raw_8bit(value: str) -> tuple[str, bool]:
    """Turn a header value holding raw 8-bit bytes into text; True when a guess was needed.

    RFC 6532 allows UTF-8 in headers, so UTF-8 is tried first; old clients wrote Latin-1 or
    Windows-1252 (from-encoding.eml), which is the second guess; anything else gets U+FFFD.
    """
    if value.isascii():
        return value, False
    try:
        raw = surrogate_bytes(value)
    except UnicodeEncodeError:  # a real non-ASCII str (not from BytesParser): already text
        return value, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    # Mostly-valid UTF-8 with a damaged byte (mailformed-headers.eml) reads better as UTF-8
    # with U+FFFD than as Windows-1252 mojibake.
    lenient = raw.decode("utf-8", "replace")
    damaged = lenient.count("\ufffd")
    if sum(1 for c in lenient if ord(c) > 127) - damaged > damaged:
        return lenient, True
    try:
        return raw.decode("cp1252"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace"), True


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _word_bytes(encoding: str, payload: str) -> bytes:
    data = payload.encode("ascii", "replace")
    if encoding in "Bb":
        data = data.rstrip(b"=")
        return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    return _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data.replace(b"_", b" "))


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded-words; an encoded-word that cannot be decoded stays as it was.

    Hand-written rather than email.header.decode_header, which turns any non-Latin-1 text next
    to an encoded-word into "\\uXXXX" escapes. Adjacent words in one charset are joined as bytes
    first, so a character split across two words (common, though RFC 2047 forbids it) survives.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    pos = 0

    def flush() -> None:
        nonlocal pending_charset
        if pending_charset is not None:
            out.append(decode_with_fallback(bytes(pending), pending_charset)[0])
            pending.clear()
            pending_charset = None

    for found in _ENCODED_WORD.finditer(value):
        between = value[pos:found.start()]
        charset = found.group(1).split("*")[0]  # RFC 2231 language suffix: utf-8*en
        try:
            data = _word_bytes(found.group(2), found.group(3))
        except (ValueError, TypeError):  # binascii.Error is a ValueError
            flush()
            out.append(between + found.group(0))
            pos = found.end()
            continue
        adjacent = pending_charset is not None and not between.strip()
        if adjacent and charset.lower() == pending_charset.lower():
            pending.extend(data)  # whitespace between adjacent encoded-words is dropped
        else:
            flush()
            if not adjacent:
                out.append(between)
            pending.extend(data)
            pending_charset = charset
        pos = found.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


def decode_header_value(raw: str) -> tuple[str, bool]:
    """A raw header value (as email's compat32 parser keeps it) -> display text, guessed?"""
    text, guessed = decode_raw_8bit(unfold(raw))
    return clean_text(decode_words(text).strip()), guessed


# Names seen in real mail that Python's codecs do not know, mapped to the codec that reads them.
CHARSET_ALIASES = {
    "utf8": "utf-8",
    "utf-8-sig": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
    "x-unknown": "cp1252",
    "unknown-8bit": "cp1252",
    "unknown": "cp1252",
    "x-user-defined": "cp1252",
    "default": "cp1252",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "ksc5601": "cp949",
    "euc-kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "windows-874": "cp874",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "ansi_x3.4-1968": "ascii",
    "us-ascii": "ascii",
    "cp-850": "cp850",
    "x-cp1250": "cp1250",
    "x-cp1251": "cp1251",
}


# Codecs a sender may name that are not character sets of text: punycode decoding is quadratic
# (40 KB took 0.6 s), idna refuses errors="replace" and raises on most input, and the escape
# codecs interpret backslashes. Bytes-to-bytes codecs (base64, zlib) are refused by lookup below.
_NOT_CHARSETS = frozenset({"idna", "punycode", "raw_unicode_escape", "unicode_escape", "undefined"})


def is_charset(name: str) -> bool:
    """True when ``name`` is a codec that turns bytes of text into str (and is safe to run)."""
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return False
    # CodecInfo._is_text_encoding is how str.encode/bytes.decode themselves refuse base64 & co.
    return bool(info._is_text_encoding) and info.name not in _NOT_CHARSETS


def _charset_candidates(charset: str | None) -> list[str]:
    if not charset:
        return []
    name = charset.strip().strip("\"'").lower()
    if not name:
        return []
    names = [name]
    alias = CHARSET_ALIASES.get(name) or CHARSET_ALIASES.get(name.replace("_", "-"))
    if alias:
        names.append(alias)
    return [n for n in names if is_charset(n)]


def decode_with_fallback(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Bytes in a declared charset -> text, and a defect string when the declaration failed.

    Order: the declared charset, its alias, UTF-8 (strict), Windows-1252 (the usual truth behind
    a wrong or unknown label), then UTF-8 with U+FFFD. Never raises (unknown charsets give
    LookupError in codecs, which is exactly what email's get_content() does not survive).
    """
    declared = _charset_candidates(charset)
    for name in declared:
        try:
            return data.decode(name), None
        except (LookupError, UnicodeDecodeError, ValueError):
            continue
        except Exception:  # a codec that misbehaves on junk (e.g. utf-7): try the next one
            continue
    named = bool((charset or "").strip().strip("\"'"))
    problem = f"charset {charset!r} did not decode the content" if named else None
    for name in ("utf-8", "cp1252"):
        try:
            return data.decode(name), problem
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", "replace"), problem or "content is not valid UTF-8"


def normalize_address(value: str) -> str:
    """A bare, trimmed, lower-cased address from `Name <a@b>`, `<a@b>`, `mailto:a@b` or `a@b`.

    Addresses are compared case-insensitively across intake (contacts are one per address);
    strictly the local part is case-sensitive, but no real mailbox relies on that.
    """
    text = clean_text(value or "").strip()
    if "<" in text:
        found = _ANGLE_ID.search(text)
        if found:
            text = found.group(1)
    else:
        try:
            parsed = email.utils.parseaddr(text)[1]
        except Exception:
            parsed = ""
        text = parsed or text
    text = text.strip().strip("<>").strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    return text.strip().lower()


_HAS_STRICT = "strict" in inspect.signature(email.utils.getaddresses).parameters


def _getaddresses(text: str) -> list[tuple[str, str]]:
    """email.utils.getaddresses in its tolerant form on every Python: security releases from
    3.11.10/3.12.6 on default to strict=True, which drops whole headers real clients write."""
    if _HAS_STRICT:
        return email.utils.getaddresses([text], strict=False)  # type: ignore[call-arg]
    return email.utils.getaddresses([text])  # older Pythons are tolerant already


# The specials of an address list in each state of the scan (RFC 5322 3.4): at the top level an
# encoded-word is one token, so a "<", "," or quote written raw inside one stays display text.
_TOP_SPECIAL = re.compile(r'=\?[^?\s]+\?[QqBb]\?[^?\s]*\?=|[",()<:;]')
_QUOTE_SPECIAL = re.compile(r'\\.|"', re.DOTALL)
_COMMENT_SPECIAL = re.compile(r"\\.|[()]", re.DOTALL)
_ANGLE_END = re.compile(r">")


def split_mailboxes(text: str) -> list[tuple[str, str | None]]:
    """An address list as ``(display text, address)`` per mailbox, the address being the content
    of the mailbox's last top-level ``<...>`` (None when it has none: a bare addr-spec).

    Written here because neither stdlib parser will do on hostile headers: ``getaddresses`` takes
    ``ceo@x`` as the sender of ``=?utf-8?q?John_<ceo@x>?= <attacker@y>`` (a raw "<" inside an
    encoded display name) and of ``ceo@x <attacker@y>``; ``email.headerregistry`` gets those
    right but is quadratic in the number of addresses (32,000 took 62 s) and recursive (nested
    comments raise RecursionError). This scan jumps from special to special with one regex per
    state, so it is linear, and the address always comes from the addr-spec, never from text a
    sender can dress up as a name.
    """
    found: list[tuple[str, str | None]] = []
    start = pos = 0
    angle: tuple[int, int] | None = None  # the last top-level <...> of the current mailbox
    length = len(text)

    def close(end: int) -> None:
        if angle is not None:
            found.append((text[start:angle[0]], text[angle[0] + 1:angle[1]]))
        elif text[start:end].strip():
            found.append((text[start:end], None))

    while pos < length:
        hit = _TOP_SPECIAL.search(text, pos)
        if hit is None:
            break
        char, pos = hit.group(0), hit.end()
        if len(char) > 1:  # an encoded-word: display text
            continue
        if char == '"':
            pos = _skip(_QUOTE_SPECIAL, text, pos, '"', '"')
        elif char == "(":
            pos = _skip(_COMMENT_SPECIAL, text, pos, "(", ")")
        elif char == "<":
            end = _ANGLE_END.search(text, pos)
            stop = end.start() if end else length
            angle = (hit.start(), stop)
            pos = stop + 1
        elif char in ",;":
            close(hit.start())
            start, angle = pos, None
        elif char == ":" and angle is None:  # a group's name ("undisclosed-recipients:")
            start = pos
    close(length)
    return found


def _skip(special: re.Pattern[str], text: str, pos: int, opening: str, closing: str) -> int:
    """The position after a quoted string or a (nested) comment that starts before ``pos``."""
    depth = 1
    while depth:
        hit = special.search(text, pos)
        if hit is None:
            return len(text)
        pos = hit.end()
        if hit.group(0) == closing:
            depth -= 1
        elif hit.group(0) == opening and opening != closing:
            depth += 1
    return pos


def _display_name(text: str) -> str | None:
    """The display text before an angle-addr: unquoted, RFC 2047 decoded, cleaned."""
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = re.sub(r"\\(.)", r"\1", text[1:-1])
    return clean_text(decode_words(text).strip()) or None


def parse_addresses(raw_values: list[str]) -> list[Address]:
    """Address headers (raw, possibly RFC 2047 names) -> Address list; never raises.

    Names are decoded after splitting, so an encoded comma (`=?utf-8?Q?Foo,_Bar?=`) stays inside
    one display name instead of splitting it in two, and an address written inside a name is
    never taken for the mailbox's address.
    """
    found: list[Address] = []
    for raw in raw_values:
        text, _ = decode_raw_8bit(unfold(raw))
        for display, angle in split_mailboxes(text):
            if angle is not None:
                address, name = normalize_address(angle), _display_name(display)
            else:  # a bare addr-spec, perhaps with a comment: "ann@x.example (Ann)"
                try:
                    pairs = _getaddresses(display)
                except Exception:
                    pairs = []
                name_raw, addr = pairs[0] if pairs else ("", display)
                address, name = normalize_address(addr), clean_text(decode_words(name_raw).strip()) or None
            if not address or "@" not in address:
                continue
            found.append(Address(address=address, name=name))
    return found


def clean_id(value: str | None) -> str | None:
    """One Message-ID without angle brackets or whitespace, or None when there is none."""
    if not value:
        return None
    text = clean_text(unfold(value)).strip()
    found = _ANGLE_ID.search(text)
    if found:
        text = found.group(1)
    text = "".join(text.split())
    if not text:
        return None
    return text[:MAX_ID_LENGTH]


def parse_id_list(value: str | None) -> list[str]:
    """References / In-Reply-To -> ids in order, without brackets; duplicates dropped."""
    if not value:
        return []
    text = clean_text(unfold(value))
    ids = [i.strip() for i in _ANGLE_ID.findall(text)]
    if not ids:  # some clients omit the brackets
        ids = [t.strip("<>") for t in re.split(r"[\s,]+", text)]
    seen: dict[str, None] = {}
    for one in ids:
        one = "".join(one.split())[:MAX_ID_LENGTH]
        if one and one not in seen:
            seen[one] = None
    return list(seen)


def parse_date(value: str | None) -> dt.datetime | None:
    """An RFC 5322 date -> aware datetime (UTC when the zone is unknown), None if unparseable."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except Exception:
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # "-0000" means "zone unknown"; UTC is the honest reading
        when = when.replace(tzinfo=dt.timezone.utc)
    try:
        when.utcoffset()
    except Exception:
        return None
    return when


def _header_lines(raw: bytes) -> list[bytes]:
    """The header lines exactly as email's feed parser delimits them (it also breaks on a bare
    CR, and stops at the first line that is neither a field nor a continuation)."""
    data = raw.lstrip(b"\r\n")[:PEEK_LIMIT]  # parse() also skips leading blank lines
    lines: list[bytes] = []
    for found in _LINE.finditer(data):
        line = found.group(1)
        if not line or not _PY_HEADER_LINE.match(line):
            break
        lines.append(line)
    return lines


def peek_message_id(raw: bytes) -> str | None:
    """The Message-ID from the header block alone, for dedupe before any real parsing.

    A bytes scan, so it cannot trip over broken MIME, charsets or a huge body; it delimits the
    header block and normalizes the id exactly like parse() does, so both agree.
    """
    try:
        value: list[bytes] | None = None
        for line in _header_lines(raw):
            if value is not None:
                if line[:1] in (b" ", b"\t"):
                    value.append(line)
                    continue
                break
            name, colon, rest = line.partition(b":")
            if colon and name.lower() == b"message-id":
                value = [rest]
        if value is None:
            return None
        return clean_id(b"\n".join(value).decode("latin-1"))
    except Exception:  # belt and braces: dedupe must never crash ingestion
        return None


def looks_like_message(raw: bytes) -> str | None:
    """None when the bytes plausibly are an RFC 822 message, else a short reason.

    Tolerant on purpose: a missing blank line after the headers (cpython msg_35) or a fragment
    that starts with MIME part headers (flanker bounce_delayed-broken.eml) still count.
    """
    try:
        return _looks_like_message(raw)
    except Exception:
        return "unreadable input"


def _looks_like_message(raw: bytes) -> str | None:
    if not raw or not raw.strip():
        return "empty file"
    head = raw[:8192]
    if head.startswith(_BINARY_MAGIC):
        return "binary data, not a message"
    if len(_CONTROL.findall(head)) > max(8, len(head) // 20):
        return "binary data, not a message"
    lines = [line for line in head.lstrip(b"\r\n").splitlines()[:40]]
    # Skip leading blank-looking lines and an mbox "From " envelope line.
    while lines and not lines[0].strip():
        lines.pop(0)
    if lines and lines[0].startswith(b"From "):
        lines.pop(0)
    fields: list[bytes] = []
    for line in lines:
        if not line.strip():
            break
        if line[:1] in (b" ", b"\t"):
            continue  # a folded continuation line
        if not _FIELD_LINE.match(line):
            break
        fields.append(line.split(b":", 1)[0].strip().lower())
    if not fields:
        return "no header fields"
    if any(f in _KNOWN_FIELDS or f.startswith(b"x-") or f.startswith(b"content-") for f in fields):
        return None
    if len(fields) >= 2:
        return None
    return "no header fields"


# What makes a file mail for `intake ingest`: its header block has at least one of these groups.
# RFC 5322 requires From and Date, but a message saved by a client or cut out of a bounce may
# have lost some; a Procfile, a TOML or YAML file, or notes with `key: value` lines have none.
# MIME-Version comes only from mail software: the shared corpus's MIME test fragments (cpython
# msg_38/msg_39, flanker's bounce_delayed-broken.eml) carry it and nothing else of these.
MAIL_EVIDENCE = (("from",), ("message-id",), ("date", "subject"), ("mime-version",))


def header_field_names(raw: bytes) -> list[str]:
    """The field names of the header block (lower case, in order), delimited like parse() does."""
    names: list[str] = []
    for line in _header_lines(raw):
        if line[:1] in (b" ", b"\t") or line.startswith(b"From "):
            continue  # a folded continuation, or an mbox envelope line
        names.append(line.split(b":", 1)[0].strip().decode("ascii", "replace").lower())
    return names


def not_mail_reason(raw: bytes) -> str | None:
    """None when the bytes are an email message to ingest, else why not (one line).

    Stricter than ``looks_like_message`` (which only tells text from binary and prose), because
    a file an operator hands to `intake ingest` by mistake must not become an inquiry.
    """
    reason = looks_like_message(raw)
    if reason == "no header fields":
        return "not an email message: no header fields"
    if reason is not None:
        return reason
    names = header_field_names(raw)
    if any(all(field in names for field in group) for group in MAIL_EVIDENCE):
        return None
    shown = ", ".join(dict.fromkeys(names[:6]))
    return (
        "not an email message: no From, Message-ID, MIME-Version, or Date and Subject header"
        + (f" (its fields: {shown})" if shown else "")
    )
