"""Opening a database: engine settings per dialect, and schema migrations.

SQLite runs in WAL mode with a busy timeout, so the CLI and a running server can
share one data folder; write transactions take the write lock up front
(``BEGIN IMMEDIATE``) so two writers never deadlock upgrading a read lock.
PostgreSQL goes through psycopg 3 with a connection pool.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event

_MIGRATIONS = Path(__file__).parent / "migrations"


def canonical_json(value: Any) -> str:
    """JSON columns are stored canonically (sorted keys, compact), so the audit ledger's
    verification can hash a record's stored ``data`` text without re-encoding it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def open_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    """Create an engine for ``url`` with tokentrail's connection settings."""
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=canonical_json,
            # One connection per request thread (Starlette runs up to 40): requests
            # never queue for a connection behind readers; SQLite connections are cheap.
            pool_size=48,
            max_overflow=0,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # transactions are begun explicitly below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    # No ping at checkout: the hot-path lookups check a connection out per statement,
    # and a `SELECT 1` before each doubled their round trips (docs/benchmarks.md). A
    # connection found dead instead renews the pool: SQLAlchemy does it for its own
    # statements, Store.lookup for the hot-path ones; the request that found it fails
    # with 503 and the next ones get fresh connections (tests/storage/test_reconnect.py).
    return create_engine(url, pool_size=10, max_overflow=20, json_serializer=canonical_json)


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; cheap when it already is."""
    head = head_revision()
    with engine.connect() as conn:
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # Several nodes may start at once: one migrates, the others wait.
            conn.exec_driver_sql("SELECT pg_advisory_lock(7419010)")
        elif engine.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        try:
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_unlock(7419010)")
                conn.commit()
