"""Scale-out with real processes: two ``tokentrail serve`` nodes on one PostgreSQL database
and a verifier in a third process following one node's revocation feed.

* a token minted on node A introspects on node B;
* a revocation acknowledged by A is in force on B at once (introspection reads the
  table) and reaches the verifier through B's feed;
* A is killed with SIGKILL in the middle of revocation traffic and restarted: no
  acknowledged revocation is lost, and A reports ready only once its revocation
  view has caught up with the table;
* the verifier's feed is cut (B frozen with SIGSTOP, then B killed): the verifier
  fails closed once its bound passes, and recovers when B is back;
* a node with ``--workers 2`` serves the same installation and shuts down on SIGTERM.

PostgreSQL only (the embedded SQLite installation is one host). Nothing asserts a
duration; waits are generous because the machine may be busy.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.conftest import _free_port

WAIT = 120.0
AUDIENCE = "https://api.example"
#: The verifier's staleness bound, in seconds.
BOUND = 3.0
VERIFIER = Path(__file__).with_name("scale_verifier.py")


def eventually(check: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not met in {timeout:.0f} s"
        time.sleep(0.05)


@dataclass
class Node:
    """One ``tokentrail serve`` process (restartable on the same port)."""

    name: str
    db: str
    root: Path
    issuer: str
    env: dict[str, str]
    workers: int = 1
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = self.root / f"{self.name}-{self.starts}.log"
        cmd = [
            sys.executable,
            "-m",
            "tokentrail",
            "serve",
            "--data",
            str(self.root / self.name),
            "--db",
            self.db,
            "--port",
            str(self.port),
            "--issuer",
            self.issuer,
            "--workers",
            str(self.workers),
            "--log-format",
            "json",
        ]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env)

    def readyz(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"{self.url}/readyz", timeout=5)
        except httpx.TransportError:
            return None
        body: dict[str, Any] = r.json()
        return body if r.status_code == 200 else None

    def wait_ready(self) -> dict[str, Any]:
        ready: list[dict[str, Any]] = []

        def check() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.logs()}"
            body = self.readyz()
            if body is not None:
                ready.append(body)
            return bool(ready)

        eventually(check, what=f"{self.name} ready")
        return ready[0]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.proc.wait(WAIT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.root.glob(f"{self.name}-*.log")))


class VerifierProcess:
    """tests/e2e/scale_verifier.py: a resource server's verifier, over stdin/stdout."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(VERIFIER), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self._lines.put(line)

    def answer(self, timeout: float = WAIT) -> Any:
        return json.loads(self._lines.get(timeout=timeout))

    def ask(self, command: str, timeout: float = WAIT) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.answer(timeout)

    def verify(self, token: str) -> str:
        return str(self.ask(f"verify {token}")["result"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.ask_quietly("quit")
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()

    def ask_quietly(self, command: str) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except OSError:
            pass


@dataclass
class Cluster:
    a: Node
    b: Node
    db: str
    env: dict[str, str]
    app: dict[str, Any]
    gateway: dict[str, Any]
    feed: dict[str, Any]
    verifier: VerifierProcess

    def cli(self, *args: str) -> Any:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "tokentrail",
                *args,
                *("--data", str(self.a.root / "cli"), "--db", self.db, "--json"),
            ],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=WAIT,
        )
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def mint(self, node: Node) -> str:
        r = httpx.post(
            f"{node.url}/oauth/token",
            data={"grant_type": "client_credentials", "scope": "read"},
            auth=(self.app["client_id"], self.app["client_secret"]),
            timeout=WAIT,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def active(self, node: Node, token: str) -> bool:
        r = httpx.post(
            f"{node.url}/oauth/introspect",
            data={"token": token},
            auth=(self.gateway["client_id"], self.gateway["client_secret"]),
            timeout=WAIT,
        )
        assert r.status_code == 200, r.text
        return bool(r.json()["active"])

    def revoke(self, node: Node, token: str) -> bool:
        """RFC 7009 revocation on ``node``; True when acknowledged (200)."""
        r = httpx.post(
            f"{node.url}/oauth/revoke",
            data={"token": token},
            auth=(self.app["client_id"], self.app["client_secret"]),
            timeout=10,
        )
        return r.status_code == 200

    def max_seq(self) -> int:
        engine = sa.create_engine(self.db.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text("SELECT max(seq) FROM revocations")).scalar() or 0)
        finally:
            engine.dispose()


def jti(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


@pytest.fixture(scope="module")
def cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("scale")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENTRAIL_")}
    env.update(
        TOKENTRAIL_KEK=base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode(),
        TOKENTRAIL_FEED_KEEPALIVE="0.5",
        TOKENTRAIL_REVOCATION_POLL_INTERVAL="0.5",
    )
    a_port = _free_port()
    issuer = f"http://127.0.0.1:{a_port}"
    a = Node("a", pg_database, root, issuer, env, port=a_port)
    b = Node("b", pg_database, root, issuer, env)
    a.start()
    a.wait_ready()  # A migrates the database; B then starts on it
    b.start()
    verifier = None
    try:
        b.wait_ready()
        partial = Cluster(a, b, pg_database, env, {}, {}, {}, None)  # type: ignore[arg-type]
        partial.cli("team", "create", "platform-iam")
        client = ["client", "create", "--team", "platform-iam", "--path"]
        app = partial.cli(
            *client,
            "workload-client-credentials",
            "--name",
            "app",
            "--scope",
            "read",
            "--audience",
            AUDIENCE,
        )
        gateway = partial.cli(*client, "workload-client-credentials", "--name", "gateway")
        feed = partial.cli(
            *client,
            "workload-client-credentials",
            "--name",
            "billing-verifier",
            "--scope",
            "tokentrail:revocations",
            "--audience",
            f"{issuer}/revocations",
        )
        verifier = VerifierProcess(
            env,
            "--issuer",
            issuer,
            "--url",
            b.url,
            "--audience",
            AUDIENCE,
            "--client-id",
            feed["client_id"],
            "--client-secret",
            feed["client_secret"],
            "--bound",
            str(BOUND),
        )
        assert verifier.answer() == {"synced": True}
        yield Cluster(a, b, pg_database, env, app, gateway, feed, verifier)
    finally:
        if verifier is not None:
            verifier.close()
        a.stop()
        b.stop()


def test_token_minted_on_a_introspects_on_b(cluster: Cluster) -> None:
    """A token minted on node A is active when introspected on node B, and verifies."""
    token = cluster.mint(cluster.a)
    assert cluster.active(cluster.b, token)
    assert cluster.verifier.verify(token) == "ok"


def test_revocation_on_a_is_rejected_on_b_and_at_the_verifier(cluster: Cluster) -> None:
    """Once A acknowledges a revocation, B introspects the token inactive, and the
    verifier following B's feed refuses it as Revoked."""
    token = cluster.mint(cluster.a)
    assert cluster.verifier.verify(token) == "ok"
    assert cluster.revoke(cluster.a, token)
    assert not cluster.active(cluster.b, token)
    waited = cluster.verifier.ask(f"wait-revoked {WAIT} {token}")
    assert waited["revoked"][0] is not None
    assert cluster.verifier.ask(f"verify {token}") == {"result": "Revoked", "id": jti(token)}


def test_sigkill_mid_traffic_loses_no_acknowledged_revocation(cluster: Cluster) -> None:
    """A killed with SIGKILL while revoking: every revocation it acknowledged is in force
    on B, at the verifier and on A after its restart, and A is ready only once caught up."""
    a, b = cluster.a, cluster.b
    tokens = [cluster.mint(b) for _ in range(60)]
    acknowledged: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        for token in tokens:
            if stop.is_set():
                return
            try:
                if cluster.revoke(a, token):
                    acknowledged.append(token)
            except httpx.TransportError:
                return  # A is gone

    worker = threading.Thread(target=traffic)
    worker.start()
    eventually(lambda: len(acknowledged) >= 10, what="revocations acknowledged by A")
    a.signal(signal.SIGKILL)
    stop.set()
    worker.join(WAIT)
    # While A is down, B goes on revoking (A must catch up on these too).
    rest = [t for t in tokens if t not in acknowledged][:5]
    for token in rest:
        assert cluster.revoke(b, token)
    acknowledged += rest
    high = cluster.max_seq()
    a.start()
    ready = a.wait_ready()
    assert ready["revocations"]["seq"] >= high
    assert ready["revocations"]["caught_up"] is True
    for token in acknowledged:
        assert not cluster.active(a, token)
        assert not cluster.active(b, token)
    waited = cluster.verifier.ask(f"wait-revoked {WAIT} {' '.join(acknowledged)}")
    assert None not in waited["revoked"]


def test_frozen_feed_fails_closed_and_recovers(cluster: Cluster) -> None:
    """With B frozen (SIGSTOP: the stream stalls, nothing closes it) the verifier refuses
    every token once its bound passes; after SIGCONT it accepts again."""
    token = cluster.mint(cluster.a)
    assert cluster.verifier.verify(token) == "ok"
    cluster.b.signal(signal.SIGSTOP)
    try:
        eventually(
            lambda: cluster.verifier.verify(token) == "StaleRevocationView",
            what="fail closed",
        )
        status = cluster.verifier.ask("status")
        assert status["staleness"] > BOUND
    finally:
        cluster.b.signal(signal.SIGCONT)
    eventually(lambda: cluster.verifier.verify(token) == "ok", what="recovery")


def test_killed_feed_fails_closed_and_catches_up_after_restart(cluster: Cluster) -> None:
    """With B killed the verifier fails closed after its bound; a revocation made on A in
    the meantime is in force at the verifier once B is back."""
    live, doomed = cluster.mint(cluster.a), cluster.mint(cluster.a)
    assert cluster.verifier.verify(doomed) == "ok"
    cluster.b.signal(signal.SIGKILL)
    eventually(lambda: cluster.verifier.verify(live) == "StaleRevocationView", what="fail closed")
    assert cluster.revoke(cluster.a, doomed)
    cluster.b.start()
    cluster.b.wait_ready()
    eventually(lambda: cluster.verifier.verify(live) == "ok", what="recovery")
    assert cluster.verifier.verify(doomed) == "Revoked"
    assert cluster.verifier.ask("status")["connects"] >= 2


def test_node_with_workers_serves_and_stops_on_sigterm(cluster: Cluster) -> None:
    """A third node with two worker processes serves tokens of the others, reports ready
    and exits on SIGTERM."""
    c = Node("c", cluster.db, cluster.a.root, cluster.a.issuer, cluster.env, workers=2)
    c.start()
    try:
        c.wait_ready()
        token = cluster.mint(cluster.a)
        assert cluster.active(c, token)
        assert "tokentrail_revocation_view_ready 1" in httpx.get(f"{c.url}/metrics").text
        c.signal(signal.SIGTERM)
        assert c.proc is not None
        assert c.proc.returncode == 0, c.logs()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{c.url}/healthz", timeout=5)
    finally:
        c.stop()
    first = c.logs().splitlines()[0]
    assert json.loads(first)["message"].startswith("tokentrail listening")
