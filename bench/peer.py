"""tokentrail side by side with panva's oidc-provider (npm), in interleaved rounds.

    python bench/peer.py --rounds 4 --duration 5 [--write]

oidc-provider 9 is installed at run time into ``~/.cache/tokentrail-bench``
(``npm install oidc-provider@9``; never inside the repository) and started with
bench/oidc_provider/server.mjs: client_credentials with client_secret_basic,
ES256 JWT access tokens through resource indicators, DPoP, introspection and
revocation enabled, the in-memory adapter. tokentrail runs as in bench/server.py
(SQLite, ``synchronous=FULL`` with group commit: durable lineage and audit).

Operations, each round A B then B A:

- issuance: ``client_credentials``, bearer JWT access token;
- introspection of a valid token. oidc-provider refuses to introspect its JWT
  access tokens (``unsupported_token_type``), so its introspected token is an
  opaque one (resource ``https://api.example/opaque``): its own best case.

DPoP-bound issuance is not measured yet: wrk's Lua cannot sign proofs (see
docs/benchmarks.md for what is left).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ab import SECTION_ID, SECTION_INTRO, SECTION_TITLE, _order, rss_kb
from bench.harness import (
    DOCS,
    Context,
    Options,
    fmt_int,
    load_average,
    machine,
    previous_section,
    render_section,
    rewrite_doc,
    spread,
    table,
)
from bench.loadgen import LoadResult, measure
from bench.server import ServerProcess, free_port

CACHE = Path(os.environ.get("TOKENTRAIL_BENCH_CACHE", Path.home() / ".cache" / "tokentrail-bench"))
SCRIPT = Path(__file__).resolve().parent / "oidc_provider" / "server.mjs"
PACKAGE = "oidc-provider@9"
WORKER = ("bench-worker", "bench-worker-secret-0123456789abcdef")
API = ("bench-api", "bench-api-secret-0123456789abcdef")


def basic(pair: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{pair[0]}:{pair[1]}".encode()).decode("ascii")


def install(log: object = print) -> str:
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


class Peer:
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
                    raise RuntimeError(self.log_path.read_text()) from None
                time.sleep(0.1)

    def opaque_token(self) -> str:
        r = httpx.post(
            f"{self.base_url}/token",
            content=b"grant_type=client_credentials&scope=read&resource=https%3A%2F%2Fapi.example%2Fopaque",
            headers={
                "Authorization": basic(WORKER),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        r.raise_for_status()
        return str(r.json()["access_token"])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--write", action="store_true")
    args = p.parse_args(argv)
    command = " ".join(["python", "bench/peer.py", *map(shlex.quote, sys.argv[1:])])
    version = install()
    options = Options.full(duration=args.duration, warmup=args.warmup, connections=args.connections)
    load = load_average()
    results: dict[tuple[str, str], list[LoadResult]] = {}
    rss: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="tokentrail-peer-") as tmp:
        ctx = Context(options, Path(tmp))
        tt = ServerProcess.start(Path(tmp) / "tt", log=ctx.log)
        peer = Peer(Path(tmp))
        try:
            calls = {
                ("issuance", "tokentrail"): (
                    f"{tt.base_url}/oauth/token",
                    "grant_type=client_credentials&scope=read",
                    tt.worker.basic,
                    '"access_token"',
                ),
                ("issuance", "oidc-provider"): (
                    f"{peer.base_url}/token",
                    "grant_type=client_credentials&scope=read",
                    basic(WORKER),
                    '"access_token"',
                ),
                ("introspection", "tokentrail"): (
                    f"{tt.base_url}/oauth/introspect",
                    urlencode({"token": tt.issue_token()}),
                    tt.gateway.basic,
                    '"active":true',
                ),
                ("introspection", "oidc-provider"): (
                    f"{peer.base_url}/token/introspection",
                    urlencode({"token": peer.opaque_token()}),
                    basic(API),
                    '"active":true',
                ),
            }
            systems = ["tokentrail", "oidc-provider"]
            for rnd in range(args.rounds):
                order = systems if rnd % 2 == 0 else systems[::-1]
                for op in ("issuance", "introspection"):
                    for system in order:
                        url, body, auth, expect = calls[(op, system)]
                        r = measure(ctx, url, body=body, authorization=auth, expect=expect)
                        results.setdefault((op, system), []).append(r)
                        ctx.log(
                            f"round {rnd + 1} {op:13} {system:>13}: {r.rps:8,.0f} req/s "
                            f"p99 {r.p99 * 1e3:6.1f} ms"
                        )
            rss = {"tokentrail": rss_kb(tt.pid), "oidc-provider": rss_kb(peer.pid)}
            info = machine(Path(tmp), ctx.loadgen().name, load)
        finally:
            tt.stop()
            peer.stop()
    o = options
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    lines = [
        "### tokentrail versus oidc-provider",
        "",
        f"oidc-provider {version} on Node {node} "
        "(bench/oidc_provider/server.mjs: client_secret_basic, ES256 JWT access tokens via "
        "resource indicators, DPoP enabled, in-memory adapter) against `tokentrail serve` "
        "(SQLite, durable). Both on the same 2 CPUs as the load generator. oidc-provider's "
        "introspected token is opaque: it refuses to introspect its JWT access tokens.",
        "",
        f"Load: `{ctx.loadgen().name}` -t{o.threads} -c{o.connections}, {o.duration:.0f} s after "
        f"{o.warmup:.0f} s warm-up per system per round; {args.rounds} rounds (A B, B A, ...). "
        f"Command: `{command}`.",
    ]
    for op in ("issuance", "introspection"):
        tt_rs, peer_rs = results[(op, "tokentrail")], results[(op, "oidc-provider")]
        ratios = [a.rps / b.rps for a, b in zip(tt_rs, peer_rs, strict=True)]
        med, lo, hi = spread(ratios)
        rows = [
            (
                name,
                fmt_int(statistics.median(r.rps for r in rs)),
                f"{statistics.median(r.p99 for r in rs) * 1e3:.1f}",
                ", ".join(fmt_int(r.rps) for r in rs),
            )
            for name, rs in (("tokentrail", tt_rs), ("oidc-provider", peer_rs))
        ]
        lines += [
            "",
            f"**{op}**: tokentrail/oidc-provider req/s per round: median {med:.2f} "
            f"(min {lo:.2f}, max {hi:.2f}); target 1.5.",
            "",
            table(("system", "req/s (median)", "p99 ms (median)", "req/s per round"), rows),
        ]
    lines += [
        "",
        f"RSS after the run: tokentrail {rss['tokentrail'] / 1024:.0f} MiB, "
        f"oidc-provider {rss['oidc-provider'] / 1024:.0f} MiB.",
    ]
    body = "\n".join(lines)
    print(body)
    if args.write:
        section = render_section(
            title=SECTION_TITLE,
            intro=SECTION_INTRO,
            machine_info=info,
            command=command,
            order=_order("peer"),
            fresh={"peer": body},
            previous=previous_section(DOCS, SECTION_ID),
            section_id=SECTION_ID,
        )
        rewrite_doc(DOCS, section, SECTION_ID)
    return 0


if __name__ == "__main__":
    sys.exit(main())
