"""Group commit for SQLite: one fsync of the write-ahead log makes many commits durable.

With ``synchronous=FULL`` SQLite fsyncs the WAL at every commit, so a disk that
flushes a few hundred times a second caps issuance at a few hundred tokens a
second. tokentrail instead commits with ``synchronous=NORMAL`` (the commit's
frames are written to the WAL, in the OS page cache) and, before a write is
acknowledged, waits for an fsync of the WAL file that started after its
commit. One fsync covers every commit that finished before it began, so
concurrent requests share flushes, and each acknowledged write is as durable
as under FULL: nothing acknowledged is lost on power failure.

Leader/follower: the first waiter with no flush in progress does the fsync
for everyone whose ticket it covers; the others wait on a condition variable.
The WAL file is reopened when SQLite replaces it (new inode).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


class WalSyncer:
    def __init__(self, db_path: Path) -> None:
        self._wal = Path(str(db_path) + "-wal")
        self._dir = db_path.parent
        self._cond = threading.Condition()
        self._issued = 0  # tickets handed out (one per acknowledged commit)
        self._synced = 0  # every ticket up to this one is durable
        self._busy = False
        self._fd: int | None = None
        self._ino: int | None = None
        #: fsyncs performed (observability and tests).
        self.flushes = 0

    def durable(self) -> None:
        """Block until a WAL flush that began after this call has completed."""
        with self._cond:
            self._issued += 1
            ticket = self._issued
            while self._synced < ticket:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                covered = self._issued
                self._cond.release()
                try:
                    self._flush()
                finally:
                    self._cond.acquire()
                    self._busy = False
                self._synced = max(self._synced, covered)
                self._cond.notify_all()

    def _flush(self) -> None:
        try:
            ino = os.stat(self._wal).st_ino
        except FileNotFoundError:
            return  # no WAL: the commit went straight to the database file
        if self._fd is None or ino != self._ino:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = os.open(self._wal, os.O_RDONLY)
            self._ino = ino
            # A new WAL file must also survive: its directory entry is in the folder.
            dir_fd = os.open(self._dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        os.fsync(self._fd)
        self.flushes += 1

    def close(self) -> None:
        with self._cond:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
