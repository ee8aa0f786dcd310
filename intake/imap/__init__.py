"""A mailbox as a way in: read IMAP folders, store every message exactly once, hand it on.

- ``settings``: ``IMAP_URL`` and the ``IMAP_OAUTH2_*`` variables, parsed and checked once.
- ``oauth``: XOAUTH2 access tokens from a refresh token (Google Workspace, Microsoft 365).
- ``connection``: one authenticated IMAPClient connection (TLS, STARTTLS, login or XOAUTH2).
- ``ledger``: the (mailbox, UIDVALIDITY, UID) ledger in the database; no IMAP in it.
- ``reader``: one pass over one mailbox: fetch in batches, store, hand on, then move or flag.
- ``runner``: the long-running loop (IDLE or polling, reconnect with backoff), one per mailbox.
- ``command``: ``intake imap [--once] [--backfill --since DATE]``.
"""
