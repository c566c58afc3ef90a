"""Introspection (RFC 7662) of a valid access token through a real ``tokentrail serve``.

Each request authenticates the calling resource server (``client_secret_basic``),
verifies the token's signature and claims, and checks its lineage (``jti`` and
``tt_anc``) against the revocations table: one indexed lookup whatever the
number of tokens issued.
"""

from __future__ import annotations

from urllib.parse import urlencode

from bench.harness import Context, Section
from bench.loadgen import load_markdown, measure

NAME = "introspection"
TITLE = "Introspection of a valid token"
SERVER = True


def run(ctx: Context) -> Section:
    server = ctx.server()
    ctx.log(f"[bold]{TITLE}[/bold]")
    token = server.issue_token()
    result = measure(
        ctx,
        f"{server.base_url}/oauth/introspect",
        body=urlencode({"token": token}),
        authorization=server.gateway.basic,
        expect='"active":true',
    )
    ctx.log(
        f"  {result.rps:,.0f} req/s, p50 {result.p50 * 1e3:.2f} ms, p99 {result.p99 * 1e3:.2f} ms"
    )
    md = "\n".join(
        [
            f"### {TITLE}",
            "",
            "`POST /oauth/introspect` with `token=<a valid access token>` and the resource "
            "server's `client_secret_basic`, to the same server; every response checked to be "
            '`"active":true` (signature, claims, and the lineage check against the '
            "revocations table).",
            "",
            load_markdown("introspection (active token)", result, ctx),
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
