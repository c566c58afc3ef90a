"""Group commit: many writes in one transaction, each answered once it is durable,
and a failing write never takes the others down with it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from tests.storage.test_store import node
from tokentrail.config import Settings
from tokentrail.storage.group_commit import GroupCommitter, _LoopJob
from tokentrail.storage.store import Store, Tx


@pytest.fixture
def store(tmp_path: Path, db_url: str | None) -> Iterator[Store]:
    s = Store.open(Settings(data_dir=tmp_path / "data", db_url=db_url).database_url)
    yield s
    s.close()


def hold(committer: GroupCommitter) -> threading.Event:
    """Occupy the committer with a write that waits for the returned event."""
    started, gate = threading.Event(), threading.Event()

    def blocked(tx: Tx) -> str:
        started.set()
        gate.wait(10)
        return "first"

    committer.submit(blocked)
    assert started.wait(10)
    return gate


def inserting(node_id: str) -> object:
    def write(tx: Tx) -> str:
        tx.insert_node(node(node_id))
        return node_id

    return write


def test_queued_writes_share_one_transaction(store: Store) -> None:
    """Writes queued while the committer is busy go out together, each with its own result."""
    committer = GroupCommitter(store)
    gate = hold(committer)
    rest = [committer.submit(inserting(f"at_{i}")) for i in range(20)]  # type: ignore[arg-type]
    gate.set()
    assert [f.result(10) for f in rest] == [f"at_{i}" for i in range(20)]
    assert committer.writes == 21
    assert committer.batches == 2  # the blocked one alone, then the twenty queued behind it
    with store.read() as tx:
        assert all(tx.get_node(f"at_{i}") is not None for i in range(20))
    committer.close()


def test_a_failing_write_fails_alone(store: Store) -> None:
    """One write raising rolls its batch back; the others commit on their own afterwards."""
    committer = GroupCommitter(store)
    gate = hold(committer)
    ok_before = committer.submit(inserting("at_ok1"))  # type: ignore[arg-type]
    duplicate = committer.submit(inserting("at_ok1"))  # type: ignore[arg-type]
    ok_after = committer.submit(inserting("at_ok2"))  # type: ignore[arg-type]
    gate.set()
    wait([ok_before, duplicate, ok_after], timeout=10)
    assert ok_before.result() == "at_ok1"
    assert ok_after.result() == "at_ok2"
    with pytest.raises(IntegrityError):
        duplicate.result()
    with store.read() as tx:
        assert tx.get_node("at_ok1") is not None
        assert tx.get_node("at_ok2") is not None
    committer.close()


def test_a_lone_failing_write_gets_its_error(store: Store) -> None:
    committer = GroupCommitter(store)

    def broken(tx: Tx) -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        committer.submit(broken).result(10)
    committer.close()


def test_close_finishes_queued_writes_then_refuses(store: Store) -> None:
    committer = GroupCommitter(store)
    futures = [committer.submit(inserting(f"at_c{i}")) for i in range(5)]  # type: ignore[arg-type]
    committer.close()
    assert all(f.done() and f.exception() is None for f in futures)
    with pytest.raises(RuntimeError, match="closed"):
        committer.submit(inserting("at_late"))  # type: ignore[arg-type]
    GroupCommitter(store).close()  # never started: nothing to join


def test_max_batch_bounds_a_transaction(store: Store) -> None:
    committer = GroupCommitter(store, max_batch=3)
    gate = hold(committer)
    futures = [committer.submit(inserting(f"at_m{i}")) for i in range(7)]  # type: ignore[arg-type]
    gate.set()
    wait(futures, timeout=10)
    assert committer.batches == 1 + 3  # 7 queued writes in batches of at most 3
    committer.close()


# --- commits from an event loop (what the HTTP front uses) ----------------------


def test_writes_from_one_turn_of_the_loop_share_a_transaction(store: Store) -> None:
    """On SQLite the writes queued in one turn of the event loop commit together on the
    loop, each answered with its own result once the WAL flush has made them durable; on
    PostgreSQL they go to the committer thread."""
    committer = GroupCommitter(store)
    flushes_before = store.syncer.flushes if store.syncer else 0

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(committer.commit(inserting(f"at_l{i}")) for i in range(20))  # type: ignore[arg-type]
        )

    assert asyncio.run(main()) == [f"at_l{i}" for i in range(20)]
    assert committer.writes == 20
    if store.dialect == "sqlite":
        assert (committer.batches, committer.loop_batches) == (1, 1)
        assert store.syncer is not None
        assert store.syncer.flushes > flushes_before
    else:
        assert committer.loop_batches == 0
    with store.read() as tx:
        assert all(tx.get_node(f"at_l{i}") is not None for i in range(20))
    committer.close()


def test_a_failing_write_on_the_loop_fails_alone(store: Store) -> None:
    committer = GroupCommitter(store)

    async def main() -> list[Any]:
        return await asyncio.gather(
            committer.commit(inserting("at_lok1")),  # type: ignore[arg-type]
            committer.commit(inserting("at_lok1")),  # type: ignore[arg-type]
            committer.commit(inserting("at_lok2")),  # type: ignore[arg-type]
            return_exceptions=True,
        )

    first, duplicate, last = asyncio.run(main())
    assert (first, last) == ("at_lok1", "at_lok2")
    assert isinstance(duplicate, IntegrityError)
    with store.read() as tx:
        assert tx.get_node("at_lok2") is not None
    committer.close()


def test_the_loop_never_waits_for_the_writer_lock(store: Store) -> None:
    """While another writer holds the lock, the loop's batch goes to the committer
    thread (which waits for it) and the loop stays free."""
    if store.dialect != "sqlite":
        pytest.skip("the writer lock is SQLite's")
    committer = GroupCommitter(store)
    holding, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        with store.write():
            holding.set()
            release.wait(10)

    t = threading.Thread(target=other_writer)
    t.start()
    assert holding.wait(10)

    async def main() -> str:
        pending = asyncio.ensure_future(committer.commit(inserting("at_busy")))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        assert not pending.done()  # waiting on the thread, while the loop runs on
        release.set()
        return str(await pending)

    assert asyncio.run(main()) == "at_busy"
    t.join(10)
    assert committer.loop_batches == 0
    assert committer.batches == 1
    committer.close()


def test_the_loop_path_after_close_refuses(store: Store) -> None:
    committer = GroupCommitter(store)
    committer.close()

    async def main() -> Any:
        return await committer.commit(inserting("at_late"))  # type: ignore[arg-type]

    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(main())


def test_a_failed_flush_fails_the_batch(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write is never acknowledged unless its flush succeeded."""
    if store.dialect != "sqlite":
        pytest.skip("the WAL flush is SQLite's")
    committer = GroupCommitter(store)

    def failing(tx: Tx) -> None:
        raise OSError("fsync failed")

    monkeypatch.setattr(store, "settle", failing)

    async def main() -> Any:
        return await committer.commit(inserting("at_unflushed"))  # type: ignore[arg-type]

    with pytest.raises(OSError, match="fsync failed"):
        asyncio.run(main())
    committer.close()


def test_a_request_that_went_away_breaks_nothing(store: Store) -> None:
    """Cancelling a waiting request (a client that hung up) breaks neither its batch
    nor the committer: on the loop its write still commits, on the committer thread
    it is dropped if it had not started, and later writes go through."""
    committer = GroupCommitter(store)

    async def main() -> None:
        gone = asyncio.ensure_future(committer.commit(inserting("at_gone")))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # queued, its batch scheduled
        gone.cancel()
        assert await committer.commit(inserting("at_after")) == "at_after"  # type: ignore[arg-type]

    asyncio.run(main())
    if store.dialect == "sqlite":
        with store.read() as tx:
            assert tx.get_node("at_gone") is not None
    committer.close()


def test_a_busy_batch_sent_to_a_closed_committer_is_refused(store: Store) -> None:
    """The store closing between the loop's attempt and the hand-over to the thread
    answers the request with the error instead of leaving it waiting."""
    if store.dialect != "sqlite":
        pytest.skip("the writer lock is SQLite's")
    committer = GroupCommitter(store)
    committer.close()

    async def main() -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        target: asyncio.Future[Any] = loop.create_future()
        # Runs in a loop callback in the server, where an exception escaping it would
        # only be logged and the request left waiting: it must answer, not raise.
        committer._to_thread(loop, [_LoopJob(inserting("at_x"), target)])  # type: ignore[arg-type]
        return target

    target = asyncio.run(main())
    assert target.done()
    with pytest.raises(RuntimeError, match="closed"):
        target.result()
