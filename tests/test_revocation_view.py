"""A server's revocation view: catch-up by sequence number, staleness, LISTEN/NOTIFY, janitor.

Runs on SQLite and PostgreSQL (the ``services`` fixture); the LISTEN/NOTIFY
tests need PostgreSQL. Waits are generous and no test asserts a duration: the
machine running them may be busy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import Factory
from tokentrail.clock import FrozenClock
from tokentrail.model import Node, NodeKind
from tokentrail.revocation_view import NodeRevocationView
from tokentrail.services import Services, build_services
from tokentrail.storage import tables as t

WAIT = 60.0


def eventually(check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _token_node(services: Services, node_id: str, *, expires_in: float) -> str:
    now = services.clock.now()
    node = Node(
        id=node_id,
        kind=NodeKind.ACCESS_TOKEN,
        path_id="workload-client-credentials",
        client_id=None,
        subject="s",
        team_id=None,
        parents=(),
        ancestors=(),
        created_at=now,
        expires_at=now + expires_in,
        meta={},
    )
    with services.store.write() as tx:
        tx.insert_node(node)
    return node_id


def _revoke(services: Services, node_id: str) -> int:
    rev = services.admin.revoke(node_id, reason="test", actor="test")
    assert rev is not None
    return rev.seq


@pytest.fixture
def view(services: Services) -> Iterator[NodeRevocationView]:
    v = NodeRevocationView(services.store, services.clock, bound=5.0, poll_interval=60.0)
    yield v
    v.close()


def test_catch_up_reads_every_revocation(
    services: Services, make: Factory, view: NodeRevocationView
) -> None:
    """catch_up loads the revocations committed so far and reports their ids as revoked."""
    a, b = make.client(), make.client()
    _revoke(services, a.credential_id)
    seq = _revoke(services, b.credential_id)
    assert view.catch_up() == 2
    assert view.seq == seq
    assert view.is_revoked(["x", b.credential_id]) == b.credential_id
    assert view.is_revoked(["x", "y"]) is None
    assert len(view) == 2
    assert view.catch_up() == 0


def test_view_is_not_ready_before_its_first_catch_up(view: NodeRevocationView) -> None:
    """Before the first catch-up the view is infinitely stale and not ready; after, it is."""
    assert view.staleness() == float("inf")
    assert not view.ready
    view.catch_up()
    assert view.ready
    assert view.staleness() <= view.bound


def test_view_older_than_its_bound_is_not_ready(services: Services) -> None:
    """A view whose last catch-up is older than its bound is no longer ready."""
    now = [1000.0]
    view = NodeRevocationView(
        services.store, services.clock, bound=5.0, poll_interval=60.0, monotonic=lambda: now[0]
    )
    view.catch_up()
    now[0] += 5.5
    assert view.staleness() == pytest.approx(5.5)
    assert not view.ready
    view.close()


def test_entries_that_no_longer_matter_are_dropped(
    services: Services, clock: FrozenClock, view: NodeRevocationView
) -> None:
    """An entry whose matters_until passed is swept from the view and left out of the feed."""
    short = _token_node(services, "at_short", expires_in=60)
    _revoke(services, short)
    view.catch_up()
    assert view.is_revoked([short]) == short
    clock.advance(61)
    view._swept_at = float("-inf")  # the next catch-up sweeps
    view.catch_up()
    assert view.is_revoked([short]) is None
    assert view.entries_after(0, 10) == ([], view.seq)


def test_expired_revocations_are_not_loaded(
    services: Services, clock: FrozenClock, view: NodeRevocationView
) -> None:
    """A catch-up skips revocations that stopped mattering, yet moves past their seq."""
    seq = _revoke(services, _token_node(services, "at_gone", expires_in=30))
    clock.advance(31)
    assert view.catch_up() == 0
    assert view.seq == seq
    assert len(view) == 0


def test_recent_entries_serve_subscribers_from_memory(services: Services, make: Factory) -> None:
    """entries_after pages through recent entries, and sends a subscriber further behind
    than the memory reaches to the table (None)."""
    view = NodeRevocationView(
        services.store, services.clock, bound=5.0, poll_interval=60.0, recent=4
    )
    seqs = [_revoke(services, make.client().credential_id) for _ in range(6)]
    view.catch_up()
    found = view.entries_after(seqs[-2], 10)
    assert found is not None
    entries, upto = found
    assert [e.seq for e in entries] == [seqs[-1]]
    assert upto == seqs[-1]
    page = view.entries_after(seqs[-3], 1)
    assert page is not None
    assert [e.seq for e in page[0]] == [seqs[-2]]
    assert page[1] == seqs[-2]
    assert view.entries_after(0, 10) is None
    assert entries[0].as_dict() == {
        "seq": seqs[-1],
        "node_id": entries[0].node_id,
        "matters_until": entries[0].matters_until,
    }
    view.close()


def test_pages_of_a_large_catch_up(services: Services, make: Factory) -> None:
    """A catch-up reads in pages until the table is exhausted."""
    view = NodeRevocationView(services.store, services.clock, bound=5.0, poll_interval=60.0, page=2)
    for _ in range(5):
        _revoke(services, make.client().credential_id)
    assert view.catch_up() == 5
    assert len(view) == 5
    view.close()


def test_lag_is_measured_from_the_commit(
    services: Services, make: Factory, clock: FrozenClock, view: NodeRevocationView
) -> None:
    """The lag statistics count each applied revocation and its delay after revoked_at."""
    _revoke(services, make.client().credential_id)
    clock.advance(2)
    view.catch_up()
    assert view.lag.count == 1
    assert view.lag.last == pytest.approx(2.0)


def test_revocation_page_reports_the_high_water_mark(
    services: Services, make: Factory, clock: FrozenClock
) -> None:
    """revocation_page skips entries that stopped mattering yet returns the highest seq read."""
    live = make.client().credential_id
    _revoke(services, live)
    dead = _revoke(services, _token_node(services, "at_dead", expires_in=10))
    clock.advance(11)
    with services.store.read() as tx:
        page, upto = tx.revocation_page(0, limit=10, live_at=clock.now())
        full, full_upto = tx.revocation_page(0, limit=1, live_at=clock.now())
    assert [r.node_id for r in page] == [live]
    assert upto == dead
    assert full_upto == full[0].seq


def test_a_revocation_committed_here_wakes_the_follower(services: Services, make: Factory) -> None:
    """The follower thread catches up at once when this process commits a revocation
    (the poll interval is an hour)."""
    view = NodeRevocationView(services.store, services.clock, bound=5.0, poll_interval=3600.0)
    view.start()
    view.start()  # a second start is a no-op
    try:
        eventually(lambda: view.ready)
        cred = make.client().credential_id
        _revoke(services, cred)
        eventually(lambda: view.is_revoked([cred]) == cred)
    finally:
        view.close()
    view.poke()  # stopped: nothing to wake, no error


def test_wakers_run_after_new_entries(
    services: Services, make: Factory, view: NodeRevocationView
) -> None:
    """Wakers are called when a catch-up applied something (and on the first catch-up)."""
    calls: list[int] = []
    view.wakers.append(lambda: calls.append(1))
    view.catch_up()
    assert calls == [1]
    view.catch_up()
    assert calls == [1]
    _revoke(services, make.client().credential_id)
    view.catch_up()
    assert calls == [1, 1]


def test_follower_polls_on_sqlite_and_survives_failures(
    services: Services, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follower keeps running when a catch-up fails, and recovers at the next round."""
    if services.store.dialect != "sqlite":
        pytest.skip("polling is the SQLite follower")
    view = NodeRevocationView(services.store, services.clock, bound=5.0, poll_interval=0.05)
    real = view.catch_up
    failures = [3]

    def flaky() -> int:
        if failures[0]:
            failures[0] -= 1
            raise sa.exc.OperationalError("select", {}, Exception("database is locked"))
        return real()

    monkeypatch.setattr(view, "catch_up", flaky)
    view.start()
    try:
        eventually(lambda: view.ready)
        assert failures == [0]
    finally:
        view.close()


# --- PostgreSQL: LISTEN/NOTIFY ------------------------------------------------------------


@pytest.fixture
def pg_services(services: Services) -> Services:
    if services.store.dialect != "postgresql":
        pytest.skip("LISTEN/NOTIFY needs PostgreSQL")
    return services


def test_notify_reaches_another_process_view(pg_services: Services, make: Factory) -> None:
    """A revocation committed through another store (another node) reaches the view by
    NOTIFY, with polling an hour apart."""
    services = pg_services
    view = NodeRevocationView(services.store, services.clock, bound=5.0, poll_interval=3600.0)
    other = build_services(services.settings, clock=services.clock)
    view.start()
    try:
        eventually(lambda: view.listening and view.ready)
        cred = make.client().credential_id
        _revoke(other, cred)
        eventually(lambda: view.is_revoked([cred]) == cred)
    finally:
        view.close()
        other.close()


def test_listener_reconnects_and_catches_up(pg_services: Services, make: Factory) -> None:
    """When its connection is killed, the listener reconnects and catches up on what was
    revoked meanwhile."""
    services = pg_services
    view = NodeRevocationView(services.store, services.clock, bound=5.0, poll_interval=3600.0)
    other = build_services(services.settings, clock=services.clock)
    view.start()
    try:
        eventually(lambda: view.listening and view.ready)
        pid = view.listener_pid
        with other.store.engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        cred = make.client().credential_id
        _revoke(other, cred)
        eventually(lambda: view.is_revoked([cred]) == cred)
        eventually(lambda: view.connects >= 2)
    finally:
        view.close()
        other.close()


def test_listener_retries_when_it_cannot_connect(
    pg_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listener that cannot connect keeps the view current by polling and retries."""
    services = pg_services
    view = NodeRevocationView(services.store, services.clock, bound=5.0, poll_interval=3600.0)
    attempts = [0]
    real = view._connect

    def refuse() -> object:
        attempts[0] += 1
        if attempts[0] < 3:
            raise OSError("connection refused")
        return real()

    monkeypatch.setattr(view, "_connect", refuse)
    view.start()
    try:
        eventually(lambda: view.listening)
        assert view.ready
    finally:
        view.close()


# --- the janitor ---------------------------------------------------------------------------


def test_janitor_deletes_what_no_longer_matters(
    services: Services, make: Factory, clock: FrozenClock
) -> None:
    """The janitor deletes revocations of expired tokens once they stop mattering and
    expired replay-cache entries, and keeps revocations of credentials."""
    cred = make.client().credential_id
    _revoke(services, cred)
    token = _revoke(services, _token_node(services, "at_old", expires_in=30))
    with services.store.write() as tx:
        assert tx.remember_once("k1", expires_at=clock.now() + 10, now=clock.now())
        assert tx.remember_once("k2", expires_at=clock.now() + 1000, now=clock.now())
    clock.advance(31)
    done = services.janitor.run_once()
    assert (done.revocations, done.replay_entries) == (1, 1)
    with services.store.read() as tx:
        assert tx.get_revocation(cred) is not None
        assert tx.revocations_since(token - 1) == []
        keys = [r.key for r in tx.conn.execute(sa.select(t.seen_jtis))]
    assert keys == ["k2"]
    assert services.janitor.deleted_revocations == 1
    assert services.janitor.run_once() == type(done)(0, 0)
