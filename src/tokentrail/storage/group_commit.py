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

On an event loop (:meth:`GroupCommitter.commit`, what the HTTP front uses) and
with SQLite, the batch runs on the loop itself: the writes queued during one
turn of the loop are committed together by a callback scheduled for the end of
that turn, and only the WAL flush (:meth:`Store.settle`) goes to a thread.
Handing every write to another thread made the two threads take turns at the
GIL for each request, which cost more CPU than the writes themselves
(docs/benchmarks.md, "Commits on the event loop"). A SQLite write is local and
short, like the rest of the request's work on the loop, but the loop must
never wait for a lock: the batch takes the writer lock without blocking, and
when another writer (a thread of this process, or another worker process)
holds it, the batch goes to the committer thread instead. On PostgreSQL,
where every statement is a network round trip, batches always run on the
committer thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokentrail.storage.writer_lock import WriterBusy

if TYPE_CHECKING:
    from tokentrail.storage.store import Store, Tx

log = logging.getLogger("tokentrail.storage")

#: Most writes in one transaction (bounds the time a batch holds the writer lock).
MAX_BATCH = 256


@dataclass(slots=True)
class _Job:
    write: Callable[[Tx], Any]
    future: Future[Any] = field(default_factory=Future)


@dataclass(slots=True)
class _LoopJob:
    write: Callable[[Tx], Any]
    future: asyncio.Future[Any]


class GroupCommitter:
    """Runs submitted writes in shared transactions on one thread (see the module notes)."""

    def __init__(self, store: Store, *, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: Writes queued on each event loop for the batch at the end of its turn.
        self._on_loop: dict[asyncio.AbstractEventLoop, list[_LoopJob]] = {}
        #: Waits for WAL flushes of batches committed on an event loop.
        self._settler: ThreadPoolExecutor | None = None
        #: Transactions committed and writes they held (observability and tests);
        #: ``loop_batches`` counts those committed on an event loop.
        self.batches = 0
        self.writes = 0
        self.loop_batches = 0

    async def commit(self, write: Callable[[Tx], Any]) -> Any:
        """From a coroutine: ``write``'s result once its transaction is durable."""
        if self._store.dialect != "sqlite":
            return await asyncio.wrap_future(self.submit(write))
        loop = asyncio.get_running_loop()
        job = _LoopJob(write, loop.create_future())
        queued = self._on_loop.get(loop)
        if queued is None:
            queued = self._on_loop[loop] = []
            # After the callbacks already ready, so that every request parsed in this
            # turn joins; in a context of its own, outside the request's.
            loop.call_soon(self._commit_queued, loop, context=contextvars.Context())
        queued.append(job)
        return await job.future

    def _commit_queued(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._on_loop.pop(loop)
        if self._closed:
            for job in batch:
                _resolve(job.future, None, RuntimeError("the store is closed"))
            return
        self._commit_on_loop(loop, batch)

    def _commit_on_loop(self, loop: asyncio.AbstractEventLoop, batch: list[_LoopJob]) -> None:
        try:
            with self._store.write_unsettled(blocking=False) as tx:
                results = [job.write(tx) for job in batch]
        except WriterBusy:
            self._to_thread(loop, batch)  # the thread may wait for the lock; the loop may not
            return
        except Exception as exc:
            if len(batch) == 1:
                _resolve(batch[0].future, None, exc)
                return
            for job in batch:  # as in _commit: each alone, so only the failing one fails
                self._commit_on_loop(loop, [job])
            return
        self.batches += 1
        self.loop_batches += 1
        self.writes += len(batch)
        settled = loop.run_in_executor(self._settling(), self._store.settle, tx)

        def answer(done: asyncio.Future[None]) -> None:
            exc = done.exception()
            for job, result in zip(batch, results, strict=True):
                _resolve(job.future, result, exc)

        settled.add_done_callback(answer)

    def _settling(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._settler is None:
                self._settler = ThreadPoolExecutor(1, thread_name_prefix="tokentrail-wal-flush")
            return self._settler

    def _to_thread(self, loop: asyncio.AbstractEventLoop, batch: list[_LoopJob]) -> None:
        for job in batch:

            def forward(done: Future[Any], target: asyncio.Future[Any] = job.future) -> None:
                exc = done.exception()
                loop.call_soon_threadsafe(
                    _resolve, target, None if exc is not None else done.result(), exc
                )

            try:
                self.submit(job.write).add_done_callback(forward)
            except RuntimeError as exc:  # closed meanwhile
                _resolve(job.future, None, exc)

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
        if self._settler is not None:
            self._settler.shutdown(wait=True)

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
            # A request that went away (its future cancelled) before its write ran is
            # dropped; a future can no longer be cancelled once running.
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if live:
                self._commit(live)

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


def _resolve(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # the request went away (cancelled) while its write ran
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
