"""Shared fixtures: a real database (SQLite, and PostgreSQL when configured),
services on a frozen clock, an in-process HTTP client, and factories.

PostgreSQL runs whenever ``TOKENTRAIL_TEST_POSTGRES_URL`` is set (``.ci/run``
sets it); the session migrates one schema and each test starts on it emptied.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
import uvicorn
from starlette.testclient import TestClient

from tokentrail.clock import FrozenClock
from tokentrail.config import Settings
from tokentrail.model import AuthMethod, ClientKind
from tokentrail.services import Services, build_services
from tokentrail.storage.store import Store
from tokentrail.storage.tables import metadata
from tokentrail.web.app import create_app

PG_URL = os.environ.get("TOKENTRAIL_TEST_POSTGRES_URL")
ISSUER = "http://testserver"
NO_PG = "PostgreSQL tests need TOKENTRAIL_TEST_POSTGRES_URL (set by .ci/run)"


def _pg_schema_url(schema: str) -> str:
    assert PG_URL is not None
    sep = "&" if "?" in PG_URL else "?"
    # Tests need no durability across power loss: skip the commit flush on the server.
    options = f"-csearch_path={schema} -csynchronous_commit=off"
    return f"{PG_URL}{sep}options={quote(options)}"


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite database, copied into each test's data folder."""
    path = tmp_path_factory.mktemp("template") / "tokentrail.db"
    Store.open(f"sqlite:///{path}").close()
    return path


@pytest.fixture(scope="session")
def _pg_schema() -> Iterator[str]:
    """One migrated PostgreSQL schema for the session; tests truncate it before use."""
    if not PG_URL:
        pytest.skip(NO_PG)
    schema = f"t_{secrets.token_hex(6)}"
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = _pg_schema_url(schema)
    Store.open(url).close()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None for SQLite in the data folder, or a PostgreSQL URL on an emptied schema.

    Both start from a database migrated once per session: SQLite copies the
    template file, PostgreSQL truncates every table (faster than migrating).
    """
    if request.param == "sqlite":
        data = tmp_path / "data"
        data.mkdir()
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), data / "tokentrail.db")
        yield None
        return
    if not PG_URL:
        pytest.skip(NO_PG)
    url = request.getfixturevalue("_pg_schema")
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            names = [t.name for t in metadata.sorted_tables]
            conn.exec_driver_sql(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE")
    finally:
        engine.dispose()
    yield url


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(float(int(time.time())))


@pytest.fixture
def settings(tmp_path: Path, db_url: str | None) -> Settings:
    # NORMAL still survives a crashed process (the crash tests kill one); FULL's
    # flush per commit only guards against power loss and slows the suite a lot.
    return Settings(
        data_dir=tmp_path / "data", db_url=db_url, issuer=ISSUER, sqlite_synchronous="NORMAL"
    )


@pytest.fixture
def services(settings: Settings, clock: FrozenClock) -> Iterator[Services]:
    s = build_services(settings, clock=clock)
    yield s
    s.close()


@pytest.fixture
def http(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services), base_url=ISSUER, raise_server_exceptions=False) as c:
        yield c


@dataclass
class Registered:
    client_id: str
    secret: str | None
    credential_id: str


@dataclass
class Factory:
    services: Services

    def team(self, name: str = "platform-iam") -> str:
        with self.services.store.read() as tx:
            if tx.get_team(name) is not None:
                return name
        return self.services.admin.create_team(name, actor="test").id

    def client(
        self,
        *,
        paths: list[str] | None = None,
        scopes: list[str] | None = None,
        audiences: list[str] | None = None,
        auth: AuthMethod = AuthMethod.CLIENT_SECRET_BASIC,
        jwks: dict[str, Any] | None = None,
        team: str = "platform-iam",
        kind: ClientKind = ClientKind.WORKLOAD,
    ) -> Registered:
        self.team(team)
        issued = self.services.admin.create_client(
            team=team,
            name="test client",
            kind=kind,
            auth_method=auth,
            jwks=jwks,
            paths=["workload-client-credentials"] if paths is None else paths,
            scopes=["read", "write"] if scopes is None else scopes,
            audiences=["https://api.example"] if audiences is None else audiences,
            actor="test",
        )
        return Registered(issued.client_id, issued.client_secret, issued.credential_id)


@pytest.fixture
def make(services: Services) -> Factory:
    return Factory(services)


class LiveServer:
    """The app on ``services`` served by uvicorn on a loopback port, in a thread.

    For what the in-process test client cannot do: endless streams (the
    revocation feed), clients in other threads, a server that goes away
    (:meth:`stop`) and comes back on the same port (:meth:`start`).
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LiveServer:
        config = uvicorn.Config(
            create_app(self.services),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not server.started:
            assert self._thread.is_alive(), "the live server did not start"
            assert time.monotonic() < deadline, "the live server did not start in 60 s"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(60)
            assert not thread.is_alive(), "the live server did not stop"


@pytest.fixture
def live(services: Services) -> Iterator[LiveServer]:
    """A running server on ``services`` (see :class:`LiveServer`)."""
    server = LiveServer(services).start()
    try:
        yield server
    finally:
        server.stop()
