"""Each server process's view of revocations, followed from the database by sequence number.

Every revocation is one row with a ``seq`` that increases in commit order
(:meth:`tokentrail.storage.store.Tx.revoke`). A :class:`NodeRevocationView`
remembers the highest ``seq`` it has read and the revoked ids that still matter
(``id -> matters_until``), and catches up by reading the rows after that seq:

* at start, before the process reports ready (``/readyz``);
* on PostgreSQL, whenever a ``NOTIFY`` on
  :data:`~tokentrail.storage.store.REVOCATION_CHANNEL` arrives (sent by the
  revoking transaction, delivered at its commit; payload: the seq). A background
  thread holds one psycopg connection that ``LISTEN`` s, and reconnects with
  back-off when it breaks; it listens *before* it catches up, so nothing falls
  between the two;
* every ``poll_interval`` seconds in any case, so a lost notification (or a
  broken listener) delays a revocation by at most that long; on SQLite (one
  host: a server plus CLI processes) this poll is the only way;
* at once when this process itself commits a revocation (a store hook).

The view's *staleness* is the time since the start of its last successful
catch-up read. Beyond ``bound`` it is not trusted: ``/readyz`` fails and the
revocation feed (:mod:`tokentrail.web.feed`) stops vouching for it with
keep-alives, so verifiers that follow this node fail closed.

The view also keeps the most recent entries in seq order for the feed: a
subscriber at seq N gets what follows from memory, or from the table when it is
further behind than the memory reaches. Entries are dropped once their
``matters_until`` has passed (every descendant has expired).

Introspection does not consult this view: it reads the revocations table, which
is exact the moment a revocation commits (see docs/scaling.md for why).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tokentrail.clock import Clock
from tokentrail.model import Revocation
from tokentrail.sdk.revocation import FollowedRevocations
from tokentrail.storage.store import REVOCATION_CHANNEL, Store

log = logging.getLogger("tokentrail.revocations")

#: Revocations read per catch-up query.
PAGE = 5_000
#: Most recent entries kept for feed subscribers (older ones come from the table).
RECENT = 50_000
#: Seconds between sweeps of entries whose ``matters_until`` has passed.
SWEEP_INTERVAL = 60.0
#: Longest wait between reconnection attempts of the PostgreSQL listener.
MAX_BACKOFF = 10.0


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """What a verifier needs of one revocation."""

    seq: int
    node_id: str
    matters_until: float

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "node_id": self.node_id, "matters_until": self.matters_until}


def _seq_of(entry: FeedEntry) -> int:
    return entry.seq


def _ignore(_notify: Any) -> None:
    pass


@dataclass(frozen=True, slots=True)
class LagStats:
    """Time from a revocation's commit (``revoked_at``) to this view applying it."""

    count: int
    total: float
    last: float


class NodeRevocationView(FollowedRevocations):
    """Revoked ids that still matter, followed from the revocations table.

    A :class:`tokentrail.sdk.RevocationView`: ``is_revoked`` takes no lock (only
    the follower thread writes, under a lock). ``wakers`` are called from the
    follower thread after new entries were applied (the feed uses one to wake
    its subscribers' event loop).
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        bound: float,
        poll_interval: float,
        page: int = PAGE,
        recent: int = RECENT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(bound=bound, monotonic=monotonic)
        self._store = store
        self._clock = clock
        self._poll = poll_interval
        self._page = page
        self._recent_max = recent
        #: (floor, entries, seq): the recent entries cover every seq in (floor, seq].
        #: One attribute, swapped whole, so readers never see a mix of two states.
        self._window: tuple[int, list[FeedEntry], int] = (0, [], 0)
        self._swept_at = -math.inf
        self._lag = LagStats(0, 0.0, 0.0)
        self._write = threading.Lock()
        self.wakers: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: Wakes the follower thread (a socket pair, so select() waits on it and on
        #: the listener connection at once); created by start().
        self._wake: tuple[socket.socket, socket.socket] | None = None
        #: Whether the PostgreSQL listener is connected (always False on SQLite).
        self.listening = False
        #: How often the listener connection was (re)established, and its backend's pid.
        self.connects = 0
        self.listener_pid: int | None = None
        store.revocation_hooks.append(self._committed_here)

    # --- the RevocationView protocol -------------------------------------------

    # --- state ------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Caught up at least once, and not stale."""
        return self.staleness() <= self._bound

    @property
    def lag(self) -> LagStats:
        return self._lag

    def entries_after(self, seq: int, limit: int) -> tuple[list[FeedEntry], int] | None:
        """Up to ``limit`` entries after ``seq`` that still matter, from memory, and the
        seq a reader has then seen everything up to; None when ``seq`` is older than
        the memory reaches (read the table instead)."""
        floor, recent, upto = self._window
        if seq < floor:
            return None
        start = bisect.bisect_right(recent, seq, key=_seq_of)
        now = self._clock.now()
        out: list[FeedEntry] = []
        for entry in recent[start:]:
            if entry.matters_until > now:
                out.append(entry)
                if len(out) >= limit:
                    return out, entry.seq
        return out, max(seq, upto)

    # --- catching up --------------------------------------------------------------

    def catch_up(self) -> int:
        """Read every revocation after :attr:`seq` from the table; returns how many."""
        started = self._monotonic()
        applied = 0
        first = self._synced_at == -math.inf
        with self._write:
            while True:
                now = self._clock.now()
                with self._store.read() as tx:
                    page, upto = tx.revocation_page(self._seq, limit=self._page, live_at=now)
                self._apply(page, upto, now)
                applied += len(page)
                if len(page) < self._page:
                    break
            self._synced_at = started
            if started - self._swept_at >= SWEEP_INTERVAL:
                self._sweep(self._clock.now())
                self._swept_at = started
        if applied or first:
            for wake in list(self.wakers):
                wake()
        return applied

    def _apply(self, page: list[Revocation], upto: int, now: float) -> None:
        if upto <= self._seq:
            return
        ids, count, total, last = self._ids, self._lag.count, self._lag.total, self._lag.last
        entries = [FeedEntry(r.seq, r.node_id, r.matters_until) for r in page]
        for rev in page:
            ids[rev.node_id] = rev.matters_until
            last = max(0.0, now - rev.revoked_at)
            count += 1
            total += last
        self._lag = LagStats(count, total, last)
        floor, recent, _ = self._window
        recent = recent + entries
        if len(recent) > self._recent_max:
            cut = len(recent) - self._recent_max // 2
            floor = recent[cut - 1].seq
            recent = recent[cut:]
        self._window = (floor, recent, upto)
        self._seq = upto

    def _sweep(self, now: float) -> None:
        """Forget ids whose ``matters_until`` has passed."""
        ids = self._ids
        for node_id in [k for k, until in ids.items() if until <= now]:
            del ids[node_id]
        floor, recent, upto = self._window
        self._window = (floor, [e for e in recent if e.matters_until > now], upto)

    def _committed_here(self, _rev: Revocation) -> None:
        """A revocation this process committed: catch up now rather than at the next poll."""
        self.poke()

    def poke(self) -> None:
        """Ask the follower thread (if running) to catch up at once."""
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(OSError):  # full buffer: a wake-up is pending; closed: stopped
                wake[1].send(b"\0")

    # --- the follower thread ----------------------------------------------------------

    def start(self) -> None:
        """Follow the table in a background thread (LISTEN on PostgreSQL, polling on SQLite)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._wake = socket.socketpair()
        for end in self._wake:
            end.setblocking(False)
        target = self._listen if self._store.dialect == "postgresql" else self._poll_loop
        self._thread = threading.Thread(
            target=target, args=(self._wake[0],), name="tokentrail-revocations", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self.poke()
        thread.join(timeout)
        wake, self._wake = self._wake, None
        if wake is not None and not thread.is_alive():
            for end in wake:
                end.close()

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(ValueError):
            self._store.revocation_hooks.remove(self._committed_here)

    def _wait(self, wake: socket.socket, extra: Sequence[Any] = ()) -> list[Any]:
        """Sleep until poked, until something in ``extra`` is readable, or a poll interval."""
        readable, _, _ = select.select([wake, *extra], [], [], self._poll)
        if wake in readable:
            with contextlib.suppress(OSError):
                while wake.recv(4096):
                    pass
        return readable

    def _safe_catch_up(self) -> None:
        try:
            self.catch_up()
        except Exception:  # the database is away: stay stale, retry next round
            log.warning("revocation catch-up failed", exc_info=True)

    def _poll_loop(self, wake: socket.socket) -> None:
        while not self._stop.is_set():
            self._safe_catch_up()
            self._wait(wake)

    def _listen(self, wake: socket.socket) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                conn = self._connect()
            except Exception:
                log.warning("revocation listener cannot connect; retrying", exc_info=True)
                self._safe_catch_up()  # the pool may still work
                self._stop.wait(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
                continue
            backoff = 0.1
            try:
                self._follow(conn, wake)
            except Exception:
                log.warning("revocation listener lost its connection; reconnecting", exc_info=True)
            finally:
                self.listening = False
                with contextlib.suppress(Exception):
                    conn.close()

    def _connect(self) -> Any:
        """A psycopg connection of its own (not from the pool), listening."""
        import psycopg

        engine = self._store.engine
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        conn = psycopg.connect(
            *cargs,
            **{
                **cparams,
                "autocommit": True,
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
            },
        )
        # Notifications that arrive during a query go to the handler, not a backlog:
        # every wake-up catches up from the table whatever was announced.
        conn.add_notify_handler(_ignore)
        try:
            conn.execute(f"LISTEN {REVOCATION_CHANNEL}")
        except Exception:
            conn.close()
            raise
        self.connects += 1
        self.listener_pid = int(conn.info.backend_pid)
        self.listening = True
        return conn

    def _follow(self, conn: Any, wake: socket.socket) -> None:
        pgconn = conn.pgconn
        self.catch_up()  # listening already: a revocation committed from now on is announced
        while not self._stop.is_set():
            readable = self._wait(wake, [pgconn.socket])
            if pgconn.socket in readable:
                pgconn.consume_input()
                while pgconn.notifies() is not None:
                    pass
            elif not readable:
                # A quiet interval: make sure the connection still answers.
                conn.execute("SELECT 1")
            self._safe_catch_up()
