"""A real ``tokentrail serve`` process on loopback, with the clients the benchmarks use.

The data folder is seeded in process (a team; a workload client allowed the
``workload-client-credentials`` path; one allowed ``workload-dpop``, where a DPoP
proof is required; a resource-server client that only introspects; and an
application on ``federated-login`` with a trusted upstream identity provider, for
sessions and refresh rotation), then the console script ``tokentrail serve``
starts on a free port with the embedded SQLite default (WAL, ``synchronous=FULL``:
every issued token's lineage node and audit record are committed before the
response), or on a PostgreSQL database (:func:`scratch_database`).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from bench.pools import Upstream
from tokentrail.config import Settings
from tokentrail.model import AuthMethod, ClientKind
from tokentrail.services import build_services

TEAM = "platform-iam"
AUDIENCE = "https://api.example"


@dataclass(frozen=True)
class ClientSecret:
    client_id: str
    secret: str
    credential_id: str

    @property
    def basic(self) -> str:
        """The ``Authorization`` header value (RFC 6749 §2.3.1 form-encodes both halves)."""
        raw = f"{quote(self.client_id, safe='')}:{quote(self.secret, safe='')}"
        return "Basic " + base64.b64encode(raw.encode()).decode("ascii")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tokentrail_command() -> list[str]:
    """The installed console script next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("tokentrail")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("tokentrail")
    if found:
        return [found]
    return [sys.executable, "-c", "from tokentrail.cli import main; main()"]


@dataclass(frozen=True)
class Clients:
    """The seeded clients, all ``client_secret_basic``."""

    worker: ClientSecret  # workload-client-credentials: bearer tokens
    dpop_worker: ClientSecret  # workload-dpop: a DPoP proof is required
    gateway: ClientSecret  # resource server: introspection only
    portal: ClientSecret  # application on federated-login: sessions, refresh rotation
    upstream: Upstream  # the identity provider whose login assertions the portal trades


def seed(data_dir: Path, db_url: str | None = None) -> Clients:
    """Create the team, the clients and the trusted upstream identity provider."""
    services = build_services(Settings(data_dir=data_dir, db_url=db_url))
    try:
        admin = services.admin
        admin.create_team(TEAM, actor="bench")

        def client(
            name: str, paths: list[str], kind: ClientKind = ClientKind.WORKLOAD
        ) -> ClientSecret:
            issued = admin.create_client(
                team=TEAM,
                name=name,
                kind=kind,
                auth_method=AuthMethod.CLIENT_SECRET_BASIC,
                jwks=None,
                paths=paths,
                scopes=["read", "write"],
                audiences=[AUDIENCE],
                actor="bench",
            )
            assert issued.client_secret is not None
            assert issued.credential_id is not None
            return ClientSecret(issued.client_id, issued.client_secret, issued.credential_id)

        upstream = Upstream()
        admin.trust_issuer(
            upstream.issuer, jwks=upstream.jwks(), audience=upstream.audience, actor="bench"
        )
        return Clients(
            worker=client("bench worker", ["workload-client-credentials"]),
            dpop_worker=client("bench dpop worker", ["workload-dpop"]),
            gateway=client("bench api", []),
            portal=client("bench portal", ["federated-login"], ClientKind.APPLICATION),
            upstream=upstream,
        )
    finally:
        services.close()


@contextmanager
def scratch_database(admin_url: str, name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database ``name`` (dropped afterwards); yields its URL."""
    import psycopg

    parts = urlsplit(admin_url)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ServerProcess:
    """``tokentrail serve`` running on a seeded data folder."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        base_url: str,
        clients: Clients,
        log_path: Path,
    ) -> None:
        self.proc = proc
        self.base_url = base_url
        self.clients = clients
        self.worker = clients.worker
        self.gateway = clients.gateway
        self.log_path = log_path

    @classmethod
    def start(
        cls,
        data_dir: Path,
        *,
        log: Callable[[str], None] = print,
        timeout: float = 60.0,
        source: Path | None = None,
        extra_args: tuple[str, ...] = (),
        db_url: str | None = None,
        http_server: str = "uvicorn",
    ) -> ServerProcess:
        """Seed ``data_dir`` (and the database ``db_url``, if given) and start the server on it.

        ``source`` runs the ``tokentrail`` package found in that folder (a ``src``
        directory of another checkout, first on ``PYTHONPATH``) instead of the
        installed one: how bench/ab.py compares two versions of the code.
        ``http_server`` ``"granian"`` runs the same app under granian (installed by
        hand: it is not a dependency) through the app factory, one worker, instead of
        ``tokentrail serve`` (uvicorn); ``extra_args`` then go to granian.
        """
        clients = seed(data_dir, db_url)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENTRAIL_")}
        if http_server == "granian":
            granian = shutil.which("granian", path=str(Path(sys.executable).parent))
            cmd = [granian or "granian", "--interface", "asgi", "--factory", "--no-ws"]
            cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
            cmd += ["--runtime-threads", "1", *extra_args]
            cmd += ["tokentrail.web.factory:create_app_from_environment"]
            env.update(TOKENTRAIL_DATA=str(data_dir), TOKENTRAIL_ISSUER=f"http://127.0.0.1:{port}")
            if db_url:
                env["TOKENTRAIL_DB"] = db_url
        else:
            cmd = [*tokentrail_command(), "serve", "--data", str(data_dir)]
            cmd += [*(["--db", db_url] if db_url else []), "--host", "127.0.0.1"]
            cmd += ["--port", str(port), *extra_args]
        log_path = data_dir / "serve.log"
        if source is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")])
        with log_path.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        base_url = f"http://127.0.0.1:{port}"
        server = cls(proc, base_url, clients, log_path)
        log(f"started `{' '.join(cmd)}` (pid {proc.pid})")
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"tokentrail serve exited with {proc.returncode}: "
                    f"{log_path.read_text(errors='replace')[-2000:]}"
                )
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"tokentrail serve did not answer within {timeout:.0f}s")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def issue_token(self) -> str:
        r = httpx.post(
            f"{self.base_url}/oauth/token",
            content=b"grant_type=client_credentials&scope=read",
            headers={
                "Authorization": self.worker.basic,
                "Content-Type": "application/x-www-form-urlencoded",
            },
            timeout=10,
        )
        r.raise_for_status()
        return str(r.json()["access_token"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
