"""Token issuance: ``client_credentials`` through a real ``tokentrail serve``, durable.

Each request authenticates the client (``client_secret_basic``), resolves the
declared path, signs an ES256 RFC 9068 access token, and commits its lineage
node, edge and audit record to SQLite (WAL, ``synchronous=FULL``) before the
response.
"""

from __future__ import annotations

from bench.harness import Context, Section
from bench.loadgen import load_markdown, measure

NAME = "issuance"
TITLE = "Token issuance (client_credentials, durable)"
SERVER = True


def run(ctx: Context) -> Section:
    server = ctx.server()
    ctx.log(f"[bold]{TITLE}[/bold]")
    result = measure(
        ctx,
        f"{server.base_url}/oauth/token",
        body="grant_type=client_credentials&scope=read",
        authorization=server.worker.basic,
        expect='"access_token"',
    )
    ctx.log(
        f"  {result.rps:,.0f} req/s, p50 {result.p50 * 1e3:.2f} ms, p99 {result.p99 * 1e3:.2f} ms"
    )
    md = "\n".join(
        [
            f"### {TITLE}",
            "",
            "`POST /oauth/token` with `grant_type=client_credentials&scope=read` and "
            "`client_secret_basic`, to `tokentrail serve` (one uvicorn process, embedded SQLite "
            "in WAL mode with `synchronous=FULL`: each token's lineage node, edge and audit "
            "record are committed, and fsynced, before the response).",
            "",
            load_markdown("client_credentials issuance", result, ctx),
        ]
    )
    return Section(
        NAME,
        TITLE,
        md,
        figures={
            "rps": result.rps,
            "p50_ms": result.p50 * 1e3,
            "p90_ms": result.p90 * 1e3,
            "p99_ms": result.p99 * 1e3,
            "requests": result.requests,
            "generator": result.generator,
        },
    )
