"""Shared fixtures: a real database (SQLite, and PostgreSQL when configured),
services on a frozen clock, an in-process HTTP client, and factories.

PostgreSQL runs whenever ``TOKENTRAIL_TEST_POSTGRES_URL`` is set (``.ci/run``
sets it); each test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from tokentrail.clock import FrozenClock
from tokentrail.config import Settings
from tokentrail.model import AuthMethod, ClientKind
from tokentrail.services import Services, build_services
from tokentrail.web.app import create_app

PG_URL = os.environ.get("TOKENTRAIL_TEST_POSTGRES_URL")
ISSUER = "http://testserver"
NO_PG = "PostgreSQL tests need TOKENTRAIL_TEST_POSTGRES_URL (set by .ci/run)"


def _pg_schema_url(schema: str) -> str:
    assert PG_URL is not None
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None for SQLite in the data folder, or a PostgreSQL URL on a fresh schema."""
    if request.param == "sqlite":
        yield None
        return
    if not PG_URL:
        pytest.skip(NO_PG)
    schema = f"t_{secrets.token_hex(6)}"
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(float(int(time.time())))


@pytest.fixture
def settings(tmp_path: Path, db_url: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "data", db_url=db_url, issuer=ISSUER)


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
