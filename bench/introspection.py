"""Introspection (RFC 7662) of a valid access token through a real ``tokentrail serve``.

Each request authenticates the calling resource server (``client_secret_basic``),
verifies the token's signature and claims, and checks its lineage (``jti`` and
``tt_anc``) against the revocations table: one indexed lookup whatever the
number of tokens issued.
"""

from __future__ import annotations

from urllib.parse import urlencode

from bench.harness import Context, Section
from bench.loadgen import http_section, measure

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
    what = (
        "`POST /oauth/introspect` with `token=<a valid access token>` and the resource "
        "server's `client_secret_basic`, to the same server; every response checked to be "
        '`"active":true` (signature, claims, and the lineage check against the '
        "revocations table)."
    )
    return http_section(NAME, TITLE, what, "introspection (active token)", result, ctx)
