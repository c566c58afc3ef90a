"""Revocation propagation across nodes and to verifiers; the verifier's cost per revoked id.

    python bench/bench_propagation.py [--quick] [--pg postgresql://...] [--json out.json]

Three measurements (issue 7):

1. **Propagation** (needs PostgreSQL: ``--pg`` or ``TOKENTRAIL_TEST_POSTGRES_URL``).
   Two ``tokentrail serve`` processes, A and B, on a database created for the run,
   and a third process holding N verifier views (:class:`tokentrail.sdk.FeedRevocations`,
   one thread and one SSE connection each) that follow B's revocation feed, for
   N = 1 and N = 50. Access tokens are minted on A, then revoked one at a time with
   RFC 7009 on A. For each revocation: the delay from A's acknowledgement (its 200
   reaching the client) to B answering the token's introspection ``active: false``
   (the first introspection sent after the acknowledgement), and to each view
   holding the revoked id (from then on the verifier raises ``Revoked``). Times come
   from one monotonic clock shared by the processes of the host. A view that had
   the id before the acknowledgement arrived counts as 0.
2. **Memory per revoked id** in a verifier view: ``tracemalloc`` over applying
   1,000,000 feed entries (ids shaped like tokentrail's, ``at_`` + 22 characters).
3. **Verification rate** with a view of 1,000,000 revoked ids versus an empty one:
   ``Verifier.verify`` of an ES256 bearer token with four lineage ancestors, in
   alternating blocks, per second of thread CPU time. Target: within 10 %.

``--quick`` runs 100 revocations and 100,000 ids.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import queue
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tokentrail import crypto, ids
from tokentrail.sdk import FeedRevocations, StaticJwks, Verifier

AUDIENCE = "https://api.example"
ISSUER = "https://tokentrail.bench"
WAIT = 180.0


# --- verifier side: memory and rate -----------------------------------------------------------


def _entries(n: int, start: int = 0) -> list[dict[str, Any]]:
    until = time.time() + 86_400
    return [
        {"seq": start + i + 1, "node_id": ids.new_id("at"), "matters_until": until}
        for i in range(n)
    ]


def memory_per_id(n: int) -> dict[str, float]:
    """Bytes a FeedRevocations view keeps per revoked id (tracemalloc; applied in chunks)."""
    view = FeedRevocations(ISSUER, token=lambda: "t", start=False)
    chunk = 50_000
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for start in range(0, n, chunk):
        batch = _entries(min(chunk, n - start), start)
        view._apply(batch)
        del batch
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(view) == n
    return {"ids": n, "bytes": after - before, "bytes_per_id": (after - before) / n}


def verification_rates(n: int, rounds: int, per_round: int) -> dict[str, Any]:
    """verify() per CPU-second with an empty view and with ``n`` revoked ids."""
    key = crypto.generate_signing_key("ES256")
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": ids.new_id("cl"),
        "aud": AUDIENCE,
        "exp": now + 3600,
        "iat": now,
        "jti": ids.new_id("at"),
        "client_id": ids.new_id("cl"),
        "scope": "read",
        "tt_path": "workload-token-exchange",
        "tt_anc": [ids.new_id("at"), ids.new_id("sess"), ids.new_id("rt"), ids.new_id("cred")],
    }
    token = crypto.TokenSigner(key, typ="at+jwt").sign(claims)
    jwks = StaticJwks({"keys": [key.public_jwk()]})
    views = {}
    for name, size in (("empty", 0), ("full", n)):
        view = FeedRevocations(ISSUER, token=lambda: "t", start=False, bound=1e9)
        for start in range(0, size, 50_000):
            view._apply(_entries(min(50_000, size - start), start))
        view._confirm(time.monotonic() + 1e8)  # current "forever": no staleness refusals
        views[name] = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks, revocations=view)
    for verifier in views.values():
        verifier.verify(token)
    clock = time.thread_time
    rates: dict[str, list[float]] = {"empty": [], "full": []}
    block = 50
    for _ in range(rounds):
        cpu = {"empty": 0.0, "full": 0.0}
        for _ in range(0, per_round, block):
            for name, verifier in views.items():
                t0 = clock()
                for _ in range(block):
                    verifier.verify(token)
                cpu[name] += clock() - t0
        for name in rates:
            rates[name].append(per_round / cpu[name])
    ratios = [f / e for f, e in zip(rates["full"], rates["empty"], strict=True)]
    return {
        "revoked_ids": n,
        "empty_per_cpu_s": statistics.median(rates["empty"]),
        "full_per_cpu_s": statistics.median(rates["full"]),
        "ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
    }


# --- propagation: processes -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lines:
    """JSON lines from a child's stdout, read in a thread (so waits can time out)."""

    def __init__(self, stream: IO[str] | None) -> None:
        self._q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self._q.put(line)

    def next(self, timeout: float = WAIT) -> Any:
        return json.loads(self._q.get(timeout=timeout))


def subscriber_host(args: argparse.Namespace) -> None:
    """Child process: N views following one node; reports when each id arrived in each view."""
    arrivals: list[dict[str, float]] = [{} for _ in range(args.count)]

    class Timed(FeedRevocations):
        def __init__(self, index: int, **kw: Any) -> None:
            self._arrived = arrivals[index]
            super().__init__(**kw)

        def _apply(self, entries: Sequence[Any]) -> None:
            super()._apply(entries)
            now = time.monotonic()
            for entry in entries:
                self._arrived.setdefault(entry["node_id"], now)

    views = [
        Timed(
            i,
            issuer=args.issuer,
            url=args.url,
            client_id=args.client_id,
            client_secret=args.client_secret,
        )
        for i in range(args.count)
    ]
    synced = all(v.wait_synced(WAIT) for v in views)
    print(json.dumps({"synced": synced}), flush=True)
    for line in sys.stdin:
        if line.strip() == "dump":
            print(json.dumps(arrivals), flush=True)
        elif line.strip() == "quit":
            break
    for v in views:
        v.close()


class Cluster:
    """Two serve processes (A and B) on a database of their own."""

    def __init__(self, pg: str, root: Path) -> None:
        self.pg = pg
        self.root = root
        self.db_name = f"tt_bench_{secrets.token_hex(5)}"
        self.admin = sa.create_engine(
            pg.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
        )
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {self.db_name}")
        self.db = make_url(pg).set(database=self.db_name).render_as_string(hide_password=False)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENTRAIL_")}
        self.env["TOKENTRAIL_KEK"] = (
            base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        )
        self.ports = {"a": _free_port(), "b": _free_port()}
        self.issuer = f"http://127.0.0.1:{self.ports['a']}"
        self.procs: list[subprocess.Popen[Any]] = []

    def url(self, node: str) -> str:
        return f"http://127.0.0.1:{self.ports[node]}"

    def cli(self, *args: str) -> Any:
        cmd = [sys.executable, "-m", "tokentrail", *args, "--data", str(self.root / "cli")]
        r = subprocess.run(
            [*cmd, "--db", self.db, "--json"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=WAIT,
            check=True,
        )
        return json.loads(r.stdout)

    def start(self, node: str) -> None:
        log = (self.root / f"{node}.log").open("wb")
        cmd = [sys.executable, "-m", "tokentrail", "serve", "--data", str(self.root / node)]
        cmd += ["--db", self.db, "--port", str(self.ports[node]), "--issuer", self.issuer]
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env))
        log.close()
        deadline = time.monotonic() + WAIT
        while True:
            try:
                if httpx.get(f"{self.url(node)}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"node {node} not ready: {(self.root / f'{node}.log').read_text()}"
                )
            time.sleep(0.1)

    def close(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
        self.admin.dispose()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _jti(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


def propagation(pg: str, revocations: int, subscriber_counts: list[int]) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="tt-bench-prop-") as tmp:
        cluster = Cluster(pg, Path(tmp))
        try:
            cluster.start("a")
            cluster.start("b")
            cluster.cli("team", "create", "platform-iam")
            base = ["client", "create", "--team", "platform-iam"]
            base += ["--path", "workload-client-credentials"]
            app = cluster.cli(*base, "--name", "app", "--scope", "read", "--audience", AUDIENCE)
            gateway = cluster.cli(*base, "--name", "gateway", "--audience", AUDIENCE)
            feed = cluster.cli(
                *base,
                "--name",
                "verifiers",
                "--scope",
                "tokentrail:revocations",
                "--audience",
                f"{cluster.issuer}/revocations",
            )
            for count in subscriber_counts:
                results.append(_propagation_run(cluster, app, gateway, feed, count, revocations))
        finally:
            cluster.close()
    return results


def _propagation_run(
    cluster: Cluster,
    app: dict[str, str],
    gateway: dict[str, str],
    feed: dict[str, str],
    count: int,
    revocations: int,
) -> dict[str, Any]:
    host = subprocess.Popen(
        [
            *(sys.executable, __file__, "--subscriber-host", "--count", str(count)),
            *("--issuer", cluster.issuer, "--url", cluster.url("b")),
            *("--client-id", feed["client_id"], "--client-secret", feed["client_secret"]),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=cluster.env,
    )
    lines = Lines(host.stdout)
    assert host.stdin is not None
    try:
        assert lines.next() == {"synced": True}
        a, b = cluster.url("a"), cluster.url("b")
        app_auth = (app["client_id"], app["client_secret"])
        gw_auth = (gateway["client_id"], gateway["client_secret"])
        with httpx.Client(timeout=WAIT) as http:
            subscribers = _gauge(http.get(f"{b}/metrics").text, "tokentrail_feed_subscribers")
            tokens = [
                http.post(
                    f"{a}/oauth/token", data={"grant_type": "client_credentials"}, auth=app_auth
                ).json()["access_token"]
                for _ in range(revocations)
            ]
            acked: list[tuple[str, float, float]] = []  # (jti, ack time, B inactive time)
            revoke_ms: list[float] = []
            for token in tokens:
                t0 = time.monotonic()
                r = http.post(f"{a}/oauth/revoke", data={"token": token}, auth=app_auth)
                ack = time.monotonic()
                assert r.status_code == 200, r.text
                revoke_ms.append((ack - t0) * 1000)
                while http.post(
                    f"{b}/oauth/introspect", data={"token": token}, auth=gw_auth
                ).json()["active"]:
                    pass
                acked.append((_jti(token), ack, time.monotonic()))
        # Let the last revocations arrive, then collect the arrival times.
        deadline = time.monotonic() + WAIT
        while True:
            host.stdin.write("dump\n")
            host.stdin.flush()
            arrivals: list[dict[str, float]] = lines.next()
            if all(j in views for views in arrivals for j, _, _ in acked):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("some revocations never reached a view")
            time.sleep(0.5)
        host.stdin.write("quit\n")
        host.stdin.flush()
    finally:
        host.wait(60)
    at_b = [(t_b - ack) * 1000 for _, ack, t_b in acked]
    at_views = [max(0.0, (views[j] - ack) * 1000) for views in arrivals for j, ack, _ in acked]
    early = sum(1 for views in arrivals for j, ack, _ in acked if views[j] < ack)
    return {
        "subscribers": count,
        "subscribers_seen_by_b": subscribers,
        "revocations": len(acked),
        "revoke_request_ms": {
            "p50": _percentile(revoke_ms, 0.5),
            "p99": _percentile(revoke_ms, 0.99),
        },
        "to_b_ms": {
            "p50": _percentile(at_b, 0.5),
            "p99": _percentile(at_b, 0.99),
            "max": max(at_b),
        },
        "to_verifier_ms": {
            "p50": _percentile(at_views, 0.5),
            "p99": _percentile(at_views, 0.99),
            "max": max(at_views),
            "samples": len(at_views),
            "before_ack": early,
        },
    }


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 revocations, 100,000 ids")
    ap.add_argument("--pg", default=os.environ.get("TOKENTRAIL_TEST_POSTGRES_URL"))
    ap.add_argument("--revocations", type=int)
    ap.add_argument("--subscribers", default="1,50", help="comma-separated subscriber counts")
    ap.add_argument("--ids", type=int, help="revoked ids for memory and rate")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--subscriber-host", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--issuer", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--client-id", help=argparse.SUPPRESS)
    ap.add_argument("--client-secret", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.subscriber_host:
        subscriber_host(args)
        return

    n_ids = args.ids or (100_000 if args.quick else 1_000_000)
    n_rev = args.revocations or (100 if args.quick else 1_000)
    results: dict[str, Any] = {"load_average": os.getloadavg(), "cpus": os.cpu_count()}

    mem = memory_per_id(n_ids)
    results["memory"] = mem
    print(f"verifier memory: {mem['bytes_per_id']:.0f} bytes per revoked id ({n_ids:,} ids)")

    rate = verification_rates(n_ids, args.rounds, 1000 if args.quick else 3000)
    results["verification"] = rate
    print(
        f"verify(): empty view {rate['empty_per_cpu_s']:,.0f}/CPU-s, {n_ids:,} revoked ids "
        f"{rate['full_per_cpu_s']:,.0f}/CPU-s, ratio {rate['ratio']:.3f} "
        f"(rounds {rate['ratio_range'][0]:.3f} - {rate['ratio_range'][1]:.3f}); "
        f"target >= 0.90: {'met' if rate['ratio'] >= 0.9 else 'NOT met'}"
    )

    if not args.pg:
        print("propagation: skipped (no PostgreSQL: --pg or TOKENTRAIL_TEST_POSTGRES_URL)")
    else:
        counts = [int(c) for c in args.subscribers.split(",")]
        results["propagation"] = propagation(args.pg, n_rev, counts)
        print(
            "| subscribers | revocations | A revoke ms p50/p99 | to B ms p50/p99 | "
            "to verifier ms p50/p99 (max) |"
        )
        print("| ---: | ---: | ---: | ---: | ---: |")
        for r in results["propagation"]:
            v = r["to_verifier_ms"]
            print(
                f"| {r['subscribers']} | {r['revocations']:,} | "
                f"{r['revoke_request_ms']['p50']:.1f} / {r['revoke_request_ms']['p99']:.1f} | "
                f"{r['to_b_ms']['p50']:.1f} / {r['to_b_ms']['p99']:.1f} | "
                f"{v['p50']:.1f} / {v['p99']:.1f} ({v['max']:.1f}) |"
            )
    results["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
