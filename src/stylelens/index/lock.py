"""One writer at a time per index folder: an advisory lock (flock) on ``writer.lock``.

index, remove, compact (and later tune) take it; readers never do. The lock dies with its process
(kill -9 included), so a crashed writer never leaves the folder locked. The file names the holder
(pid, command, since) for the one-line refusal a second writer gets.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from ..errors import IndexBusyError

LOCK_FILE = "writer.lock"


class WriterLock:
    def __init__(self, folder):
        self.path = Path(folder) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> "WriterLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise IndexBusyError(
                f"Index {self.path.parent} is being changed by another writer ({holder}). Wait for it to finish or stop "
                "it, then run this again; searching and serving are not affected.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv)[:300],
                                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']}, `{info['command']}`, since {info['since']}"
    except (ValueError, KeyError, OSError):
        return "a process that has just started"
