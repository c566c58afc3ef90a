"""The SQLite writer lock: re-entrant in a thread, exclusive across lock holders of one file."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tokentrail.storage.writer_lock import WriterLock


def test_reentrant_within_a_thread(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "db.writer-lock")
    with lock, lock:  # a nested write in the same thread does not wait on itself
        pass
    lock.close()
    lock.close()  # closing twice is harmless


def test_exclusive_across_holders_of_the_same_file(tmp_path: Path) -> None:
    """Two locks on one file (as two processes would hold): the second waits for the first,
    and gets the lock as soon as it is released."""
    path = tmp_path / "db.writer-lock"
    first, second = WriterLock(path), WriterLock(path)
    order: list[str] = []
    held = threading.Event()

    def other() -> None:
        held.wait(10)
        with second:
            order.append("second")

    t = threading.Thread(target=other)
    t.start()
    with first:
        held.set()
        time.sleep(0.2)  # the other thread is blocked in flock meanwhile
        order.append("first")
    t.join(10)
    assert order == ["first", "second"]
    first.close()
    second.close()


def test_without_a_file_it_is_a_thread_lock() -> None:
    """In-memory databases get no lock file; threads still take turns."""
    lock = WriterLock(None)
    order: list[str] = []
    held = threading.Event()

    def other() -> None:
        held.wait(10)
        with lock:
            order.append("other")

    t = threading.Thread(target=other)
    t.start()
    with lock:
        held.set()
        time.sleep(0.2)
        order.append("holder")
    t.join(10)
    assert order == ["holder", "other"]
    lock.close()


def test_a_writer_that_will_not_wait_is_told_the_lock_is_taken(tmp_path: Path) -> None:
    """acquire(blocking=False): False at once while another holder (another thread of
    this process, or another process's lock on the file) has it; True once released."""
    path = tmp_path / "db.writer-lock"
    lock, other_process = WriterLock(path), WriterLock(path)
    with other_process:
        assert lock.acquire(blocking=False) is False  # the flock is taken
    assert lock.acquire(blocking=False) is True
    assert lock.acquire(blocking=False) is True  # re-entrant in its own thread
    lock.release()
    lock.release()

    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            done.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(10)
    assert lock.acquire(blocking=False) is False  # the thread lock is taken
    done.set()
    t.join(10)
    assert lock.acquire(blocking=False) is True
    lock.release()
    lock.close()
    other_process.close()
