"""Group commit: many writes in one transaction, each answered once it is durable,
and a failing write never takes the others down with it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from tests.storage.test_store import node
from tokentrail.config import Settings
from tokentrail.storage.group_commit import GroupCommitter
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
