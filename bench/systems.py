"""The systems compared by bench/peer.py, and the HTTP call each makes for each operation.

A system is a running server plus, per operation it supports, a :class:`Call`:
what wrk posts, what every response must contain, and for single-use material a
:class:`bench.loadgen.Pool` that makes it right before each run and checks
afterwards that the requests took effect (a revoked token reads inactive, a
rotated refresh token is refused).

- :class:`Tokentrail`: ``tokentrail serve`` (bench/server.py) on SQLite or on a
  PostgreSQL database, with any extra ``serve`` arguments (``--workers 2``);
- :class:`OidcProvider`: panva's oidc-provider 9 (npm, installed at run time into
  ``~/.cache/tokentrail-bench``), started with bench/oidc_provider/server.mjs.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

import httpx

from bench.harness import Context
from bench.loadgen import Pool, collect
from bench.pools import dpop_proofs, evenly
from bench.server import ServerProcess, free_port

CACHE = Path(os.environ.get("TOKENTRAIL_BENCH_CACHE", Path.home() / ".cache" / "tokentrail-bench"))
SCRIPT = Path(__file__).resolve().parent / "oidc_provider" / "server.mjs"
PACKAGE = "oidc-provider@9"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

#: Operations in the order they run within a round. The first two need no pool, so
#: their rates are known before the first pool is sized.
OPERATIONS = ("issuance", "introspection", "issuance-dpop", "revocation", "refresh")
TITLES = {
    "issuance": "client_credentials issuance, bearer",
    "introspection": "introspection of a valid token",
    "issuance-dpop": "client_credentials issuance, DPoP-bound",
    "revocation": "revocation (RFC 7009), a fresh token per request",
    "refresh": "refresh_token grant with rotation",
}
ISSUE = "grant_type=client_credentials&scope=read"


def basic(client_id: str, secret: str) -> str:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode("ascii")


def post(url: str, authorization: str, data: dict[str, str]) -> httpx.Response:
    return httpx.post(url, data=data, headers={"Authorization": authorization}, timeout=30)


@dataclass
class Call:
    """One operation against one system: what wrk sends and what every answer must hold.

    ``body`` may be a function, called before every run (a token to introspect is
    issued afresh, as it would expire during a long run).
    """

    url: str
    body: str | Callable[[], str]
    authorization: str
    expect: str
    pool: Pool | None = None


@dataclass
class System:
    """A running server under a display name, and the operations it supports."""

    name: str
    pid: int
    calls: dict[str, Call]
    stop: Callable[[], None]
    description: str = ""
    log_path: Path | None = None

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]


# --- checks run after a pool's measured run -----------------------------------------------


def inactive_after(introspect_url: str, authorization: str) -> Callable[[list[str], int], None]:
    """Check: a sample of the revoked tokens introspects inactive, the last (unsent) one active.

    The active one shows the server still knows the pool's tokens, so "inactive"
    means revoked, not forgotten.
    """

    def active(token: str) -> object:
        r = post(introspect_url, authorization, {"token": token})
        r.raise_for_status()
        return r.json().get("active")

    def check(items: list[str], spent: int) -> None:
        for token in evenly(items[:spent], 10):
            if active(token) is not False:
                raise RuntimeError("a revoked token still introspects as active")
        if active(items[-1]) is not True:
            raise RuntimeError("a token of the pool that was never revoked is not active")

    return check


def refused_after(token_url: str, authorization: str) -> Callable[[list[str], int], None]:
    """Check: a sample of the rotated (spent) refresh tokens is refused on reuse."""

    def check(items: list[str], spent: int) -> None:
        for token in evenly(items[:spent], 3):
            r = post(
                token_url, authorization, {"grant_type": "refresh_token", "refresh_token": token}
            )
            if r.status_code != 400 or r.json().get("error") != "invalid_grant":
                raise RuntimeError(f"a rotated refresh token was not refused: {r.text[:200]}")

    return check


# --- tokentrail --------------------------------------------------------------------------


def tokentrail(
    ctx: Context,
    name: str,
    data_dir: Path,
    *,
    db_url: str | None = None,
    extra_args: tuple[str, ...] = (),
) -> System:
    """Seed and start ``tokentrail serve``; its calls for every operation."""
    server = ServerProcess.start(data_dir, log=ctx.log, db_url=db_url, extra_args=extra_args)
    try:
        return _tokentrail_calls(ctx, name, server, db_url, extra_args)
    except BaseException:
        server.stop()
        raise


def _tokentrail_calls(
    ctx: Context,
    name: str,
    server: ServerProcess,
    db_url: str | None,
    extra_args: tuple[str, ...],
) -> System:
    c = server.clients
    token_url = f"{server.base_url}/oauth/token"
    introspect_url = f"{server.base_url}/oauth/introspect"
    worker, dpop_worker, gateway, portal = (
        c.worker.basic,
        c.dpop_worker.basic,
        c.gateway.basic,
        c.portal.basic,
    )

    def access_tokens(n: int) -> list[str]:
        return collect(
            ctx,
            token_url,
            body=ISSUE,
            authorization=worker,
            expect='"access_token"',
            field="access_token",
            count=n,
        )

    def refresh_tokens(n: int) -> list[str]:
        """``n`` sessions, each through a one-use upstream login assertion (RFC 7523)."""
        return collect(
            ctx,
            token_url,
            body=f"grant_type={quote(JWT_BEARER, safe='')}&assertion={{item}}&scope=read",
            authorization=portal,
            expect='"refresh_token"',
            field="refresh_token",
            count=n,
            make=c.upstream.assertions,
        )

    calls = {
        "issuance": Call(token_url, ISSUE, worker, '"token_type":"Bearer"'),
        "introspection": Call(
            introspect_url,
            lambda: urlencode({"token": server.issue_token()}),
            gateway,
            '"active":true',
        ),
        "issuance-dpop": Call(
            token_url,
            ISSUE,
            dpop_worker,
            '"token_type":"DPoP"',
            Pool(lambda n: dpop_proofs(token_url, n), header="DPoP"),
        ),
        "revocation": Call(
            f"{server.base_url}/oauth/revoke",
            "token={item}",
            worker,
            "",
            Pool(access_tokens, check=inactive_after(introspect_url, gateway)),
        ),
        "refresh": Call(
            token_url,
            "grant_type=refresh_token&refresh_token={item}",
            portal,
            '"refresh_token"',
            Pool(refresh_tokens, check=refused_after(token_url, portal)),
        ),
    }
    command = " ".join(["tokentrail serve", *extra_args])
    database = "PostgreSQL" if db_url else "SQLite (WAL, synchronous=FULL)"
    return System(
        name,
        server.pid,
        calls,
        server.stop,
        description=f"`{command}` on {database}",
        log_path=server.log_path,
    )


# --- oidc-provider -----------------------------------------------------------------------


def install_oidc_provider() -> str:
    """Install oidc-provider into the cache folder (once); its version."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("node and npm are needed for the oidc-provider comparison")
    CACHE.mkdir(parents=True, exist_ok=True)
    pkg = CACHE / "node_modules" / "oidc-provider" / "package.json"
    if not pkg.exists():
        if not (CACHE / "package.json").exists():
            (CACHE / "package.json").write_text('{"private": true}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", PACKAGE], cwd=CACHE, check=True
        )
    return str(json.loads(pkg.read_text())["version"])


class NodeServer:
    """``node bench/oidc_provider/server.mjs PORT`` on loopback."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "oidc-provider.log"
        env = {**os.environ, "OIDC_PROVIDER_DIR": str(CACHE), "NODE_ENV": "production"}
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                ["node", str(SCRIPT), str(self.port)], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.base_url}/.well-known/openid-configuration", timeout=1)
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(self.log_path.read_text()) from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def oidc_provider(ctx: Context, workdir: Path) -> System:
    """Start oidc-provider; its calls (the clients are declared in server.mjs)."""
    node = NodeServer(workdir)
    try:
        return _oidc_provider_calls(ctx, node)
    except BaseException:
        node.stop()
        raise


def _oidc_provider_calls(ctx: Context, node: NodeServer) -> System:
    base = node.base_url
    token_url, introspect_url = f"{base}/token", f"{base}/token/introspection"
    worker = basic("bench-worker", "bench-worker-secret-0123456789abcdef")
    dpop_worker = basic("bench-dpop", "bench-dpop-secret-0123456789abcdef")
    api = basic("bench-api", "bench-api-secret-0123456789abcdef")
    session = basic("bench-session", "bench-session-secret-0123456789abcdef")
    # oidc-provider neither introspects nor revokes its JWT access tokens
    # (unsupported_token_type): those two operations use opaque ones, its best case.
    opaque = ISSUE + "&resource=" + quote("https://api.example/opaque", safe="")

    def opaque_tokens(n: int) -> list[str]:
        if n == 1:
            r = post(token_url, worker, dict(parse_qsl(opaque)))
            r.raise_for_status()
            return [str(r.json()["access_token"])]
        return collect(
            ctx,
            token_url,
            body=opaque,
            authorization=worker,
            expect='"access_token"',
            field="access_token",
            count=n,
        )

    def refresh_tokens(n: int) -> list[str]:
        r = httpx.post(f"{base}/bench/sessions", params={"count": n}, timeout=300)
        r.raise_for_status()
        tokens = r.text.split()
        if len(tokens) != n:
            raise RuntimeError(f"oidc-provider minted {len(tokens)} refresh tokens, not {n}")
        return tokens

    calls = {
        "issuance": Call(token_url, ISSUE, worker, '"token_type":"Bearer"'),
        "introspection": Call(
            introspect_url,
            lambda: urlencode({"token": opaque_tokens(1)[0]}),
            api,
            '"active":true',
        ),
        "issuance-dpop": Call(
            token_url,
            ISSUE,
            dpop_worker,
            '"token_type":"DPoP"',
            Pool(lambda n: dpop_proofs(token_url, n), header="DPoP"),
        ),
        "revocation": Call(
            f"{base}/token/revocation",
            "token={item}",
            worker,
            "",
            Pool(opaque_tokens, check=inactive_after(introspect_url, api)),
        ),
        "refresh": Call(
            token_url,
            "grant_type=refresh_token&refresh_token={item}",
            session,
            '"refresh_token"',
            Pool(refresh_tokens, check=refused_after(token_url, session)),
        ),
    }
    return System(
        "oidc-provider",
        node.proc.pid,
        calls,
        node.stop,
        description="oidc-provider (bench/oidc_provider/server.mjs, in-memory adapter)",
        log_path=node.log_path,
    )
