"""One SQLite writer at a time, across the threads and processes of one data folder.

SQLite admits one writer; the others wait in its busy handler, which sleeps in
steps of up to 100 ms and cannot be woken when the lock frees. With several
server workers (``serve --workers N``) and CLI commands on the same data
folder, that sleep dominates: a writer that finds the lock taken idles long
after it was released. tokentrail's writers therefore queue on a lock of
their own before ``BEGIN IMMEDIATE``: a thread lock within the process and an
``flock`` on a file beside the database across processes; the kernel wakes the
next waiter the moment the holder releases it, so SQLite's busy handler is
almost never reached. The lock is re-entrant within a thread, like the thread
lock it extends. Where ``flock`` is not available the thread lock alone is used.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]


class WriterBusy(Exception):
    """A writer that would not wait found the lock taken; nothing was written."""


class WriterLock:
    def __init__(self, path: Path | None) -> None:
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        if path is not None and fcntl is not None:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        self.acquire()

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take the lock; without ``blocking``, False at once if another holder has it."""
        if not self._thread_lock.acquire(blocking):
            return False
        if self._depth == 0 and self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                self._thread_lock.release()
                return False
            except BaseException:
                self._thread_lock.release()
                raise
        self._depth += 1
        return True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        with self._thread_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
