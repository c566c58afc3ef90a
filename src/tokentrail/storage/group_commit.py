"""Group commit of whole transactions: many requests' writes, one transaction, one flush.

Issuing a token writes three small rows (node, edge, audit record), and the
transaction around them costs more than the rows: taking the writer lock,
``BEGIN``, reading the audit chain's tail, ``COMMIT``, and the flush that makes
the commit durable. The :class:`GroupCommitter` runs the writes that requests
hand it (``submit``) on one thread of its own: it takes every write waiting in
its queue, runs them in one :meth:`Store.write` transaction, commits and waits
for the flush once, and only then resolves each request's future. While it
commits, new writes queue up and form the next batch, so under load a batch
holds about as many writes as there are requests in flight, and with a single
request it is a batch of one (no added latency: nothing waits for a timer).

Durability is unchanged: a request is answered only after the transaction
holding its rows has committed and been flushed (on SQLite, the shared WAL
fsync of :mod:`.walsync`; on PostgreSQL, the commit itself).

Failure isolation: if any write of a batch raises, the whole transaction rolls
back and every write of the batch runs again alone, in a transaction of its
own, so only the failing request sees its error. A write must therefore be
safe to run twice when its first run was rolled back (it computes everything
it stores, and stores nothing elsewhere).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokentrail.storage.store import Store, Tx

log = logging.getLogger("tokentrail.storage")

#: Most writes in one transaction (bounds the time a batch holds the writer lock).
MAX_BATCH = 256


@dataclass(slots=True)
class _Job:
    write: Callable[[Tx], Any]
    future: Future[Any] = field(default_factory=Future)


class GroupCommitter:
    """Runs submitted writes in shared transactions on one thread (see the module notes)."""

    def __init__(self, store: Store, *, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: Transactions committed and writes they held (observability and tests).
        self.batches = 0
        self.writes = 0

    def submit(self, write: Callable[[Tx], Any]) -> Future[Any]:
        """Queue ``write``; its future resolves once its transaction is durable."""
        job = _Job(write)
        with self._lock:
            if self._closed:
                raise RuntimeError("the store is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="tokentrail-group-commit", daemon=True
                )
                self._thread.start()
            self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Finish the queued writes, then stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            self._commit(batch)

    def _commit(self, batch: list[_Job]) -> None:
        try:
            with self._store.write() as tx:
                results = [job.write(tx) for job in batch]
        except Exception as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            # Something in the batch failed and took the transaction with it: give
            # every write a transaction of its own, so only the failing one fails.
            for job in batch:
                self._commit([job])
            return
        self.batches += 1
        self.writes += len(batch)
        for job, result in zip(batch, results, strict=True):
            job.future.set_result(result)
