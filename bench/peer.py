"""tokentrail side by side with panva's oidc-provider, and tokentrail at 1 and 2 workers.

    python bench/peer.py [--rounds 4] [--duration 5] [--only peer|workers] [--write]

Two comparisons, each in interleaved rounds (A B C, then C B A, ...) and each
its own block of docs/benchmarks.md (section ``issue-8``) plus PNG charts in
docs/bench/ (with ``--write``):

- ``peer``: tokentrail on SQLite (durable) and on PostgreSQL against
  oidc-provider 9 (npm, installed at run time into ``~/.cache/tokentrail-bench``,
  never inside the repository; bench/oidc_provider/server.mjs configures it like
  tokentrail: client_secret_basic, ES256 JWT access tokens, DPoP, rotation).
  Operations: bearer and DPoP-bound client_credentials issuance, introspection of
  a valid token, revocation of a fresh token per request, refresh rotation.
- ``workers``: ``tokentrail serve --workers 1`` versus ``--workers 2``, on SQLite
  and on PostgreSQL: issuance and introspection.

Single-use material (DPoP proofs, tokens to revoke, refresh tokens) is made
right before each run (see bench/pools.py and bench/systems.py). PostgreSQL runs
get a scratch database each on ``--postgres`` (created and dropped here); when
that server cannot be reached, the PostgreSQL systems are left out and the
block says so.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import plots
from bench.ab import rss_kb, write_section
from bench.harness import (
    DOCS,
    Context,
    Options,
    load_average,
    machine,
)
from bench.rounds import Results, Rounds, load_line, op_table, run_rounds
from bench.server import scratch_database
from bench.systems import OPERATIONS, TITLES, System, install_oidc_provider, oidc_provider
from bench.systems import tokentrail as tokentrail_system

DEFAULT_POSTGRES = os.environ.get(
    "TOKENTRAIL_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SHORT = {
    "issuance": "issuance\n(bearer)",
    "issuance-dpop": "issuance\n(DPoP)",
    "introspection": "introspection",
    "revocation": "revocation",
    "refresh": "refresh\nrotation",
}
PEER_NOTES = """
What each operation sends (`client_secret_basic` everywhere; every response checked):

- **issuance (bearer)**: `grant_type=client_credentials&scope=read`; the answer must say
  `"token_type":"Bearer"`. tokentrail commits the token's lineage node, edge and audit
  record before answering; oidc-provider keeps nothing for a JWT access token.
- **issuance (DPoP)**: the same with a `DPoP` proof per request, each made for that
  server's token endpoint (unique `jti`, `iat` of the round, ES256) just before the
  round; the answer must say `"token_type":"DPoP"`. Clients that require DPoP on both
  sides (tokentrail path `workload-dpop`, oidc-provider `dpop_bound_access_tokens`).
  **No DPoP nonces on either side**: tokentrail's `dpop_require_nonce` is off by default,
  and oidc-provider is given no `nonceSecret`, so neither demands one.
- **introspection**: one valid token, answer `"active":true`. oidc-provider refuses to
  introspect its JWT access tokens (`unsupported_token_type`), so it introspects an
  opaque one (its best case: one in-memory lookup); tokentrail matches its JWT against
  the digest recorded at issuance and checks its lineage against the revocations table
  (one statement).
- **revocation**: RFC 7009, a different token per request, issued just before the round
  and spent once; the answer must be 200. Afterwards a sample of the revoked tokens must
  introspect as `"active":false` on each server. tokentrail revokes its JWT access tokens
  (one durable revocation row and audit record); oidc-provider refuses to revoke JWTs,
  so it revokes opaque tokens (deleted from memory).
- **refresh rotation**: `grant_type=refresh_token`, a different refresh token per request,
  the answer must carry a new `refresh_token`; afterwards a sample of the spent ones must
  be refused (`invalid_grant`). tokentrail's sessions come from its JWT bearer grant (an
  upstream login assertion, path `federated-login`, rotation on), issued before the
  round. oidc-provider only issues refresh tokens through the interactive
  authorization_code flow, which cannot be driven at these rates, so bench/oidc_provider/
  server.mjs mints them with oidc-provider's own Grant and RefreshToken models
  (`POST /bench/sessions`, before the round) and sets `rotateRefreshToken: true`; the
  measured request is oidc-provider's real refresh_token grant.
"""


def _systems_line(systems: list[System]) -> str:
    return "Systems: " + "; ".join(f"**{s.name}**: {s.description}" for s in systems) + "."


def _rss_line(systems: list[System]) -> str:
    return (
        "Server RSS after the run: "
        + ", ".join(f"{s.name} {rss_kb(s.pid) / 1024:.0f} MiB" for s in systems)
        + "."
    )


def block(
    title: str,
    intro: list[str],
    measured: Rounds,
    reference: dict[str, str],
    charts: list[Path],
    tail: list[str],
) -> str:
    lines = [f"### {title}", "", *intro]
    for op, per_system in measured.results.items():
        failed = measured.failed.get(op, {})
        if per_system or failed:
            lines += ["", f"**{TITLES[op]}**", "", op_table(per_system, reference, failed)]
    if charts:
        lines += ["", plots.markdown_links(charts, DOCS.parent)]
    return "\n".join([*lines, "", *tail])


def postgres_url(ctx: Context, admin_url: str) -> str | None:
    """``admin_url`` when that PostgreSQL server answers, else None (and say so)."""
    if not admin_url:
        return None
    import psycopg

    try:
        with psycopg.connect(admin_url, connect_timeout=5):
            return admin_url
    except psycopg.Error as exc:
        ctx.log(f"[bold yellow]PostgreSQL at {admin_url} is not reachable ({exc}): skipped")
        return None


def start_tokentrail(
    ctx: Context,
    stack: ExitStack,
    name: str,
    pg: str | None,
    extra_args: tuple[str, ...] = (),
) -> System:
    slug = "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")
    db_url = None
    if pg is not None:
        db_url = stack.enter_context(scratch_database(pg, f"tt_bench_{os.getpid()}_{slug}"))
    system = tokentrail_system(ctx, name, ctx.workdir / slug, db_url=db_url, extra_args=extra_args)
    stack.callback(system.stop)
    return system


def peer(ctx: Context, args: argparse.Namespace, command: str, pg: str | None) -> str:
    version = install_oidc_provider()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    ops = args.op or list(OPERATIONS)
    with ExitStack() as stack:
        systems = [start_tokentrail(ctx, stack, "tokentrail (SQLite)", None)]
        if pg is not None:
            systems.append(start_tokentrail(ctx, stack, "tokentrail (PostgreSQL)", pg))
        peer_system = oidc_provider(ctx, ctx.workdir)
        stack.callback(peer_system.stop)
        systems.append(peer_system)
        measured = run_rounds(ctx, systems, ops, args.rounds)
        rss = _rss_line(systems)
    reference = {s.name: "oidc-provider" for s in systems if s is not peer_system}
    charts = _charts(args, measured.results, "peer", "tokentrail versus oidc-provider")
    intro = [
        f"oidc-provider {version} on Node {node} against `tokentrail serve`, all on the same "
        "machine as the load generator. " + _systems_line(systems),
        "",
        load_line(ctx, args.rounds, command),
        "",
        "The ratio column is tokentrail / oidc-provider req/s in the same round (target 1.5 "
        "for issuance and introspection)."
        + ("" if pg else " PostgreSQL was not reachable: its system is missing."),
        PEER_NOTES,
    ]
    return block("tokentrail versus oidc-provider", intro, measured, reference, charts, [rss])


def workers(ctx: Context, args: argparse.Namespace, command: str, pg: str | None) -> str:
    ops = [op for op in (args.op or OPERATIONS) if op in ("issuance", "introspection")]
    databases = [("SQLite", None)] + ([("PostgreSQL", pg)] if pg else [])
    reference = {}
    with ExitStack() as stack:
        systems = []
        for db, url in databases:
            one, two = f"{db}, 1 worker", f"{db}, 2 workers"
            systems.append(start_tokentrail(ctx, stack, one, url))
            systems.append(start_tokentrail(ctx, stack, two, url, ("--workers", "2")))
            reference[two] = one
        measured = run_rounds(ctx, systems, ops, args.rounds)
        rss = _rss_line(systems)
    charts = _charts(args, measured.results, "workers", "tokentrail serve --workers 1 vs 2")
    intro = [
        "`tokentrail serve --workers 2` (two uvicorn worker processes on one port, each with "
        "its own services) against one worker, on SQLite and on PostgreSQL; every server has "
        "its own fresh database. " + _systems_line(systems),
        "",
        load_line(ctx, args.rounds, command),
        "",
        "The ratio column is 2 workers / 1 worker req/s on the same database in the same round. "
        f"The machine has {os.cpu_count()} CPUs, shared by the servers and wrk."
        + ("" if pg else " PostgreSQL was not reachable: its rows are missing."),
    ]
    return block("tokentrail serve: 1 worker versus 2", intro, measured, reference, charts, [rss])


def _charts(args: argparse.Namespace, results: Results, name: str, title: str) -> list[Path]:
    if not args.write or args.no_plots:
        return []
    if not plots.available():
        print("matplotlib is missing (pip install -e '.[bench]'): no charts", file=sys.stderr)
        return []
    return list(plots.charts(results, name, SHORT, title))


COMPARISONS: dict[str, Callable[[Context, argparse.Namespace, str, str | None], str]] = {
    "peer": peer,
    "workers": workers,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--only", action="append", choices=list(COMPARISONS))
    p.add_argument("--op", action="append", choices=OPERATIONS, help="only these operations")
    p.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES,
        help="PostgreSQL server for scratch databases ('' to leave PostgreSQL out)",
    )
    p.add_argument("--pool-factor", type=float, default=2.0, help="single-use pool headroom")
    p.add_argument("--no-plots", action="store_true", help="with --write: draw no PNG charts")
    p.add_argument("--write", action="store_true", help="rewrite docs/benchmarks.md and charts")
    args = p.parse_args(argv)
    command = " ".join(["python", "bench/peer.py", *map(shlex.quote, sys.argv[1:])])
    options = Options.full(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        pool_factor=args.pool_factor,
    )
    load = load_average()
    fresh = {}
    with tempfile.TemporaryDirectory(prefix="tokentrail-peer-") as tmp:
        ctx = Context(options, Path(tmp))
        pg = postgres_url(ctx, args.postgres)
        for name in args.only or list(COMPARISONS):
            fresh[name] = COMPARISONS[name](ctx, args, command, pg)
            print(fresh[name] + "\n")
        info = machine(Path(tmp), ctx.loadgen().name, load)
    if args.write:
        write_section(info, command, fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
