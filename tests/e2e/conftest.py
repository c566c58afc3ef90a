"""A real ``tokentrail serve`` process for end-to-end tests, on SQLite and PostgreSQL.

``tt_server`` starts ``python -m tokentrail serve`` on a free port with a fresh
data folder, waits for ``/healthz`` and always terminates the process. Its
PostgreSQL variant runs when ``TOKENTRAIL_TEST_POSTGRES_URL`` is set, on a
database created for the module and dropped afterwards. ``Server.cli`` runs the
command line against the same installation while the server is up.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import NO_PG, PG_URL

#: How long a server may take to answer /healthz before the test fails.
START_TIMEOUT = 60.0


@dataclass
class Server:
    """A running server and the CLI of its installation."""

    base: str
    data: Path
    db: str | None
    log: Path

    def cli(self, *args: str) -> str:
        """Run ``tokentrail ARGS --data ... [--db ...]``; returns stdout, fails on error."""
        extra = ["--data", str(self.data)] + (["--db", self.db] if self.db else [])
        r = subprocess.run(
            [sys.executable, "-m", "tokentrail", *args, *extra],
            capture_output=True,
            text=True,
            env=_clean_env(),
            timeout=120,
        )
        assert r.returncode == 0, f"tokentrail {' '.join(args)} failed:\n{r.stderr}"
        return r.stdout

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json"))

    def url(self, path: str) -> str:
        return self.base + path


def _clean_env() -> dict[str, str]:
    """The environment without TOKENTRAIL_* settings that would override the flags."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TOKENTRAIL_")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server did not answer /healthz:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of its own (``postgresql://`` URL), dropped afterwards."""
    if not PG_URL:
        pytest.skip(NO_PG)
    name = f"tt_e2e_{secrets.token_hex(6)}"
    admin = sa.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def tt_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A ``tokentrail serve`` process on a fresh installation, terminated afterwards."""
    db = request.getfixturevalue("pg_database") if request.param == "postgres" else None
    root = tmp_path_factory.mktemp(f"tt-{request.param}")
    data, log = root / "data", root / "server.log"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "tokentrail", "serve", "--data", str(data), "--port", str(port)]
    if db:
        cmd += ["--db", db]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_clean_env())
    try:
        _wait_healthy(proc, base, log)
        yield Server(base, data, db, log)
    finally:
        _stop(proc)
