"""PostgreSQL connections lost under the pool (a server restart, a dropped link):
the request that meets a dead connection fails, and the pool starts afresh, so
the next one works. No `SELECT 1` ping at checkout pays for this on every request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.exc import SQLAlchemyError

from tests.storage.test_store import node
from tokentrail.config import Settings
from tokentrail.storage.store import Store


@pytest.fixture
def store(tmp_path: Path, db_url: str | None) -> Iterator[Store]:
    if db_url is None:
        pytest.skip("server connections are PostgreSQL's")
    s = Store.open(Settings(data_dir=tmp_path / "data", db_url=db_url).database_url)
    yield s
    s.close()


def _url(store: Store) -> str:
    return store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _server_time(store: Store) -> object:
    with psycopg.connect(_url(store), autocommit=True) as admin:
        row = admin.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


def _drop_connections(store: Store, since: object) -> None:
    """What a server restart does to the connections the store opened since ``since``
    (the test harness's own connections are older, and left alone)."""
    with psycopg.connect(_url(store), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_start >= %s",
            (since,),
        )


def _attempts(action: Callable[[], object], n: int = 3) -> list[str]:
    outcomes = []
    for _ in range(n):
        try:
            action()
            outcomes.append("ok")
        except SQLAlchemyError:
            outcomes.append("failed")
    return outcomes


def _fill_pool(store: Store) -> None:
    """Three connections at once, so that three wait in the pool afterwards."""
    with store.lookup() as a, store.lookup() as b, store.lookup() as c:
        for db in (a, b, c):
            db.node("at_r1")


def _lookup(store: Store) -> None:
    with store.lookup() as db:
        db.node("at_r1")


def _read(store: Store) -> None:
    with store.read() as tx:
        tx.get_node("at_r1")


@pytest.mark.parametrize(
    ("first", "then"),
    [(_lookup, _read), (_read, _lookup)],
    ids=["hot-path lookup first", "sqlalchemy statement first"],
)
def test_a_dead_connection_fails_one_request_and_renews_the_pool(
    store: Store, first: Callable[[Store], None], then: Callable[[Store], None]
) -> None:
    """Whichever path meets a dead connection first (the hot-path lookups renew the pool
    themselves, SQLAlchemy does it for its own statements), that request fails (503
    over HTTP) and the next ones, on either path, get fresh connections instead of the
    other dead ones waiting in the pool."""
    since = _server_time(store)
    with store.write() as tx:
        tx.insert_node(node("at_r1"))
    _fill_pool(store)
    _drop_connections(store, since)
    assert _attempts(lambda: first(store)) == ["failed", "ok", "ok"]
    assert _attempts(lambda: then(store), 2) == ["ok", "ok"]
