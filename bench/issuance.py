"""Token issuance: ``client_credentials`` through a real ``tokentrail serve``, durable.

Each request authenticates the client (``client_secret_basic``), resolves the
declared path, signs an ES256 RFC 9068 access token, and commits its lineage
node, edge and audit record to SQLite (WAL, ``synchronous=FULL``) before the
response.
"""

from __future__ import annotations

from bench.harness import Context, Section
from bench.loadgen import http_section, measure

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
    what = (
        "`POST /oauth/token` with `grant_type=client_credentials&scope=read` and "
        "`client_secret_basic`, to `tokentrail serve` (one uvicorn process, embedded SQLite "
        "in WAL mode with `synchronous=FULL`: each token's lineage node, edge and audit "
        "record are committed, and fsynced, before the response)."
    )
    return http_section(NAME, TITLE, what, "client_credentials issuance", result, ctx)
