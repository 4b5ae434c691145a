"""Shopper events (like, dislike, view, upload) as stored rows: ``users.sqlite`` in an index folder.

``query.personalize`` decides what the events mean; a store here only keeps them, in order. A
database index keeps the same rows in its ``events`` table (``index.postgres``), so every replica
reads the likes any replica recorded.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from ..errors import ShoppersUnavailable

USERS_DB = "users.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL, kind TEXT NOT NULL, product_id TEXT, sha256 TEXT, vector BLOB, at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user, seq);
"""


class SqliteEvents:
    """The events of every shopper of one index folder. Safe to share between threads."""

    def __init__(self, folder):
        self.path = Path(folder) / USERS_DB
        try:
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            # No server path in the message: it reaches shoppers through the API.
            raise ShoppersUnavailable(f"The shoppers' database of this index ({USERS_DB}) cannot be used ({exc}). Likes and "
                                      f"'For you' need a readable, writable {USERS_DB} beside the index; move a damaged one "
                                      "away and it starts anew.") from None
        self.lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    def append(self, user: str, kind: str, product_id: str | None, sha256: str | None, vector: bytes | None) -> None:
        """One event; an upload of a picture the shopper searched before replaces the older one."""
        with self.lock, self.db:
            self.db.execute("BEGIN")
            if kind == "upload" and sha256:
                self.db.execute("DELETE FROM events WHERE user=? AND kind='upload' AND sha256=?", (user, sha256))
            self.db.execute("INSERT INTO events (user, kind, product_id, sha256, vector, at) VALUES (?, ?, ?, ?, ?, ?)",
                            (user, kind, product_id, sha256, vector, time.time()))

    def rows(self, user: str) -> list[tuple[str, str | None, bytes | None]]:
        """(kind, product id, vector bytes) of a shopper's events, oldest first."""
        with self.lock:
            return self.db.execute("SELECT kind, product_id, vector FROM events WHERE user=? ORDER BY seq", (user,)).fetchall()

    def forget(self, user: str) -> int:
        with self.lock, self.db:
            self.db.execute("BEGIN")
            return self.db.execute("DELETE FROM events WHERE user=?", (user,)).rowcount

    def users(self) -> list[str]:
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT DISTINCT user FROM events ORDER BY user")]
