"""Cascade revocation: time to take effect at 1,000 versus 1,000,000 descendants.

One SQLite database (the embedded default: WAL, ``synchronous=FULL``) holds two
client credentials: one with a small and one with a large tree of descendants,
built straight into the store with SQLAlchemy Core in large batches (every
tenth descendant an access token minted from the credential, the other nine
tokens exchanged from it, so the deepest lineage is token -> token ->
credential). Keeping both trees in one database leaves the descendant count as
the only difference between the two measurements.

A trial times ``Admin.revoke(credential)`` (one durable write transaction:
the revocation row and its audit record) and then the first liveness check of
the deepest, last-built descendant: the introspection path's decision
(``AccessTokens.verify``, then ``Tx.first_revoked`` over the token's ``jti``
and ``tt_anc``), which must name the revoked credential. The revocation is then
deleted so the next trial starts alive again; trials alternate between the two
credentials.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import delete, insert

from bench.harness import Context, Section, Target, fmt_int, fmt_ms, spread, table
from tokentrail.config import Settings
from tokentrail.model import AuthMethod, ClientKind, NodeKind
from tokentrail.oauth.access_token import lineage
from tokentrail.services import Services, build_services
from tokentrail.storage import tables as t

NAME = "revocation"
TITLE = "Cascade revocation: time to take effect"
SERVER = False

TEAM = "platform-iam"
AUDIENCE = "https://api.example"
FANOUT = 10
TARGET_FACTOR = 2.0


def _client(services: Services, name: str) -> tuple[str, str]:
    issued = services.admin.create_client(
        team=TEAM,
        name=name,
        kind=ClientKind.WORKLOAD,
        auth_method=AuthMethod.CLIENT_SECRET_BASIC,
        jwks=None,
        paths=["workload-client-credentials", "workload-token-exchange"],
        scopes=["read"],
        audiences=[AUDIENCE],
        actor="bench",
    )
    assert issued.credential_id is not None
    return issued.client_id, issued.credential_id


NODE_COLUMNS = (
    "id", "kind", "path_id", "client_id", "subject", "team_id", "parents", "ancestors",
    "created_at", "expires_at", "meta", "token_hash", "used_at",
)  # fmt: skip
EDGE_COLUMNS = ("parent_id", "child_id")


def _compiled_insert(table: Any, columns: tuple[str, ...], dialect: Any) -> str:
    """The Core ``INSERT`` of ``columns`` into ``table``, compiled to the driver's SQL."""
    return str(insert(table).compile(dialect=dialect, column_keys=list(columns)))


def build_descendants(
    services: Services,
    *,
    client_id: str,
    credential_id: str,
    count: int,
    batch: int,
    progress: Progress | None,
) -> tuple[str, tuple[str, ...]]:
    """Insert ``count`` descendants of ``credential_id``; the deepest last one and its ancestors.

    The statements are SQLAlchemy Core inserts on the store's own tables,
    compiled once and run as driver-level executemany with rows as tuples and
    JSON columns pre-encoded: the per-row bind processing of the ORM-free Core
    path would otherwise triple the build time. ``batch`` nodes (and their
    edges) go in per transaction; the connection's page cache is enlarged for
    the build only and reset after.
    """
    store = services.store
    node_sql = _compiled_insert(t.nodes, NODE_COLUMNS, store.engine.dialect)
    edge_sql = _compiled_insert(t.edges, EDGE_COLUMNS, store.engine.dialect)
    now = time.time()
    expires = float(math.floor(now + 3600))
    meta_at = json.dumps({"aud": [AUDIENCE], "scope": ["read"]})
    meta_ex = json.dumps({"aud": [AUDIENCE], "scope": ["read"], "act": {"sub": client_id}})
    kind = NodeKind.ACCESS_TOKEN.value
    cred_json = json.dumps([credential_id])
    # Ids have the shape and length of real ones (``at_`` + 22 characters) but rise
    # within a build, so index inserts append instead of landing on random pages:
    # random ids only make the build slower (lookups cost the same at this depth).
    run = secrets.token_hex(3)
    task = progress.add_task(f"{count:,} descendants", total=count) if progress else None
    parent = credential_id
    last: tuple[str, tuple[str, ...]] = ("", ())
    done = 0
    while done < count:
        n = min(batch, count - done)
        nodes: list[tuple[Any, ...]] = []
        edges: list[tuple[str, str]] = []
        for i in range(done, done + n):
            node_id = f"at_{run}{i:016x}"
            if i % FANOUT == 0:
                parent = node_id
                row = (
                    node_id, kind, "workload-client-credentials", client_id, client_id, TEAM,
                    cred_json, cred_json, now, expires, meta_at, None, None,
                )  # fmt: skip
                edges.append((credential_id, node_id))
                last = (node_id, (credential_id,))
            else:
                row = (
                    node_id, kind, "workload-token-exchange", client_id, client_id, TEAM,
                    f'["{parent}"]', f'["{parent}", "{credential_id}"]', now, expires, meta_ex,
                    None, None,
                )  # fmt: skip
                edges.append((parent, node_id))
                last = (node_id, (parent, credential_id))
            nodes.append(row)
        with store.write() as tx:
            tx.conn.exec_driver_sql("PRAGMA cache_size=-262144")  # 256 MiB for the build
            tx.conn.exec_driver_sql(node_sql, nodes)
            tx.conn.exec_driver_sql(edge_sql, edges)
            tx.conn.exec_driver_sql("PRAGMA cache_size=-2000")  # SQLite's default again
        done += n
        if progress is not None and task is not None:
            progress.advance(task, n)
    return last


def probe_token(
    services: Services, node_id: str, ancestors: tuple[str, ...], client_id: str
) -> str:
    """A signed access token for a built descendant, as the authority would have minted it."""
    now = math.floor(services.clock.now())
    return services.authority.tokens.mint(
        {
            "iss": services.settings.issuer,
            "sub": client_id,
            "aud": AUDIENCE,
            "exp": now + 3600,
            "iat": now,
            "jti": node_id,
            "client_id": client_id,
            "scope": "read",
            "tt_path": "workload-token-exchange",
            "tt_anc": list(ancestors),
        }
    )


def liveness(services: Services, token: str) -> str | None:
    """The introspection path's liveness decision for ``token``: the revoked id that kills it.

    ``AccessTokens.verify`` (signature, issuer, expiry), then one read of the
    revocations table for the token's ``jti`` and ``tt_anc`` (``Tx.first_revoked``),
    exactly as ``IntrospectionEndpoint.access_token`` decides, without its
    side effects (a detection is recorded when a revoked token is presented).
    """
    claims = services.authority.tokens.verify(token)
    with services.store.read() as tx:
        return tx.first_revoked(lineage(claims))


def trial(services: Services, credential_id: str, token: str) -> tuple[float, float]:
    """Seconds for the revocation, and for the first check that proves the descendant dead."""
    perf = time.perf_counter
    t0 = perf()
    rev = services.admin.revoke(credential_id, reason="bench: leaked secret", actor="bench")
    t1 = perf()
    killed_by = liveness(services, token)
    t2 = perf()
    if rev is None or killed_by != credential_id:
        raise RuntimeError(f"revocation did not take effect: {rev!r}, {killed_by!r}")
    return t1 - t0, t2 - t1


def reset(services: Services, credential_id: str, token: str) -> None:
    """Undo a trial's revocation (bench only) and make sure the descendant is alive again."""
    with services.store.write() as tx:
        tx.conn.execute(delete(t.revocations).where(t.revocations.c.node_id == credential_id))
    if liveness(services, token) is not None:
        raise RuntimeError("descendant is not alive before the trial")


def run(ctx: Context, data_dir: Path | None = None) -> Section:
    opts = ctx.options
    small, large = opts.sizes
    data_dir = data_dir or ctx.workdir / "revocation"
    ctx.log(f"[bold]{TITLE}[/bold] ({small:,} vs {large:,} descendants, {opts.trials} trials each)")
    services = build_services(Settings(data_dir=data_dir))
    try:
        services.admin.create_team(TEAM, actor="bench")
        setups: dict[int, dict[str, Any]] = {}
        progress = (
            Progress(
                TextColumn("  building {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=ctx.console,
                transient=False,
            )
            if opts.progress
            else None
        )
        if progress is not None:
            progress.start()
        try:
            for size in (small, large):
                client_id, cred_id = _client(services, f"bench {size}")
                t0 = time.perf_counter()
                node_id, ancestors = build_descendants(
                    services,
                    client_id=client_id,
                    credential_id=cred_id,
                    count=size,
                    batch=opts.batch,
                    progress=progress,
                )
                built = time.perf_counter() - t0
                with services.store.read() as tx:
                    stored = tx.get_node(node_id)
                if stored is None or stored.ancestors != ancestors:
                    raise RuntimeError(f"the built descendant {node_id} does not read back")
                token = probe_token(services, node_id, ancestors, client_id)
                setups[size] = {"cred": cred_id, "token": token, "build_s": built}
        finally:
            if progress is not None:
                progress.stop()
        for size, s in setups.items():
            ctx.log(f"  built {size:,} descendants in {s['build_s']:.1f} s")
            reset(services, s["cred"], s["token"])

        revoke_s: dict[int, list[float]] = {small: [], large: []}
        check_s: dict[int, list[float]] = {small: [], large: []}
        for i in range(opts.trials):
            order = (small, large) if i % 2 == 0 else (large, small)
            for size in order:
                s = setups[size]
                r, c = trial(services, s["cred"], s["token"])
                revoke_s[size].append(r)
                check_s[size].append(c)
                reset(services, s["cred"], s["token"])

        # For contrast: what touching every descendant would cost (one recursive query).
        enum_s: dict[int, float] = {}
        for size, s in setups.items():
            t0 = time.perf_counter()
            with services.store.read() as tx:
                counted = tx.count_descendants(s["cred"])
            enum_s[size] = time.perf_counter() - t0
            if counted != size:
                raise RuntimeError(f"built {size} descendants but the store counts {counted}")
        db_file = data_dir / "tokentrail.db"
        db_mb = db_file.stat().st_size / 1e6 if db_file.exists() else float("nan")
    finally:
        services.close()

    totals = {
        size: [r + c for r, c in zip(revoke_s[size], check_s[size], strict=True)]
        for size in (small, large)
    }
    rows = []
    for size in (small, large):
        r_med, r_lo, r_hi = spread(revoke_s[size])
        c_med, c_lo, c_hi = spread(check_s[size])
        tot_med, tot_lo, tot_hi = spread(totals[size])
        build_s = setups[size]["build_s"]
        rows.append(
            (
                f"{size:,}",
                f"{fmt_ms(r_med)} ({fmt_ms(r_lo)} - {fmt_ms(r_hi)})",
                f"{fmt_ms(c_med)} ({fmt_ms(c_lo)} - {fmt_ms(c_hi)})",
                f"**{fmt_ms(tot_med)}** ({fmt_ms(tot_lo)} - {fmt_ms(tot_hi)})",
                f"{enum_s[size]:.3f}",
                f"{build_s:.1f} ({fmt_int(size / build_s)} rows/s)",
            )
        )
    factor = spread(totals[large])[0] / spread(totals[small])[0]
    target = Target(
        name=f"effect time at {large:,} / at {small:,} descendants (medians)",
        goal=f"<= {TARGET_FACTOR:g}x",
        value=f"{factor:.2f}x",
        met=factor <= TARGET_FACTOR,
    )
    md = "\n".join(
        [
            f"### {TITLE}",
            "",
            f"Both credentials live in one SQLite database ({db_mb:,.0f} MB at the end; WAL, "
            "`synchronous=FULL` throughout, the build included). Descendants were inserted "
            f"straight into the store with SQLAlchemy Core, {opts.batch:,} nodes and edges per "
            "transaction; every tenth is an access token minted from the credential, the other "
            "nine are exchanged from it. Per trial: `Admin.revoke(credential)` (one durable "
            "transaction: revocation row and audit record), then the first liveness check of the "
            "deepest, last-built descendant as the introspection path decides it "
            "(`AccessTokens.verify`: signature, issuer, expiry; then `Tx.first_revoked` over its "
            "`jti` and `tt_anc`), which must name the revoked credential. "
            f"{opts.trials} trials per size, alternating; times in ms, median (min - max).",
            "",
            table(
                [
                    "descendants",
                    "revoke ms",
                    "first check ms",
                    "effect ms (sum)",
                    "enumerating descendants s (for contrast)",
                    "build s",
                ],
                rows,
            ),
            "",
            "Revocation writes one row whatever the tree below; the check reads the token's "
            "own id and its ancestors (at most the delegation depth) from the revocations "
            "table. The enumeration column is the recursive query that a revocation which "
            "touched every descendant would have to run at the very least.",
            "",
            target.markdown(),
        ]
    )
    return Section(
        NAME,
        TITLE,
        md,
        figures={
            "sizes": [small, large],
            "effect_ms": {str(k): spread(v)[0] * 1e3 for k, v in totals.items()},
            "revoke_ms": {str(k): spread(v)[0] * 1e3 for k, v in revoke_s.items()},
            "check_ms": {str(k): spread(v)[0] * 1e3 for k, v in check_s.items()},
            "build_s": {str(k): v["build_s"] for k, v in setups.items()},
            "enumerate_s": {str(k): v for k, v in enum_s.items()},
            "factor": factor,
        },
        targets=[target],
    )
