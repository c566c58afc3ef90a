"""SQLite group commit: acknowledged writes wait for a shared fsync of the WAL."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tokentrail.storage.store import Store
from tokentrail.storage.walsync import WalSyncer


def test_full_durability_uses_group_commit(tmp_path: Path) -> None:
    """FULL on SQLite opens connections with NORMAL plus a WAL syncer."""
    store = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        assert store.syncer is not None
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        with store.write() as tx:
            tx.remember_once("k", expires_at=10.0, now=0.0)
        assert store.syncer.flushes == 1
    finally:
        store.close()


def test_normal_has_no_syncer(tmp_path: Path) -> None:
    """Asking for NORMAL means no flush before acknowledging."""
    store = Store.open(f"sqlite:///{tmp_path / 'b.db'}", sqlite_synchronous="NORMAL")
    try:
        assert store.syncer is None
    finally:
        store.close()


def test_every_write_waits_for_a_flush_that_started_after_its_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent writers share flushes, and no one returns before a covering flush."""
    store = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    assert store.syncer is not None
    events: list[tuple[str, Any]] = []
    lock = threading.Lock()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        with lock:
            events.append(("flush-start", None))
        real_fsync(fd)
        with lock:
            events.append(("flush-end", None))

    monkeypatch.setattr(os, "fsync", fsync)

    def writer(i: int) -> None:
        for j in range(20):
            with store.write() as tx:
                tx.remember_once(f"{i}-{j}", expires_at=10.0, now=0.0)
            with lock:
                events.append(("ack", (i, j)))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    acks = [e for e in events if e[0] == "ack"]
    assert len(acks) == 160
    assert store.syncer.flushes <= 160
    # Every acknowledgement follows a completed flush.
    assert events[0][0] == "flush-start"
    first_end = next(i for i, e in enumerate(events) if e[0] == "flush-end")
    first_ack = next(i for i, e in enumerate(events) if e[0] == "ack")
    assert first_end < first_ack


def test_reopens_a_replaced_wal(tmp_path: Path) -> None:
    """When SQLite replaces the WAL file, the syncer follows the new one."""
    db = tmp_path / "d.db"
    syncer = WalSyncer(db)
    syncer.durable()  # no WAL yet: nothing to flush
    assert syncer.flushes == 0
    wal = Path(str(db) + "-wal")
    wal.write_bytes(b"x")
    syncer.durable()
    wal.unlink()
    wal.write_bytes(b"y")
    syncer.durable()
    assert syncer.flushes == 2
    syncer.close()
