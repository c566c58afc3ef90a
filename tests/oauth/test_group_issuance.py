"""client_credentials issuance through the group committer: concurrent requests share
transactions, every token is durable and audited in one unbroken chain, and the
synchronous path (Pending.run) behaves the same."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import ISSUER, Factory, LiveServer
from tests.dpop_proofs import new_key, proof
from tokentrail.audit import Event
from tokentrail.clock import FrozenClock
from tokentrail.oauth.dpop import InvalidDPoPProof
from tokentrail.oauth.request import OAuthRequest
from tokentrail.services import Services
from tokentrail.web.app import create_app

FORM = b"grant_type=client_credentials&scope=read"


def _request(reg: Any, *, dpop: str | None = None, url: str = f"{ISSUER}/oauth/token") -> Any:
    return OAuthRequest.parse(
        FORM,
        content_type="application/x-www-form-urlencoded",
        authorization=httpx.BasicAuth(reg.client_id, reg.secret or "")._auth_header,
        dpop=[dpop] if dpop else None,
        url=url,
        client_ip="127.0.0.1",
    )


def test_concurrent_issuance_is_durable_and_chained(
    live: LiveServer, make: Factory, services: Services
) -> None:
    """Forty concurrent requests: forty distinct tokens, each written by the group
    committer with its node and audit record, and an audit chain that verifies."""
    reg = make.client()
    committed_before = services.store.committer.writes

    def issue(_: int) -> str:
        r = httpx.post(
            f"{live.url}/oauth/token",
            content=FORM,
            auth=(reg.client_id, reg.secret or ""),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    with ThreadPoolExecutor(max_workers=20) as pool:
        tokens = list(pool.map(issue, range(40)))
    assert len(set(tokens)) == 40
    committer = services.store.committer
    assert committer.writes - committed_before == 40
    with services.store.read() as tx:
        issued = tx.audit_records(event=Event.TOKEN_ISSUED, limit=1000)
    assert len(issued) >= 40
    assert services.ledger.verify().ok
    with services.store.read() as tx:
        for token in tokens:
            claims = services.authority.tokens.verify(token)
            assert tx.get_node(claims["jti"]) is not None


def test_synchronous_issuance_runs_the_pending_write(make: Factory, services: Services) -> None:
    """TokenEndpoint.handle (no event loop) commits the write itself."""
    reg = make.client()
    body = services.token.handle(_request(reg))
    claims = services.authority.tokens.verify(body["access_token"])
    with services.store.read() as tx:
        assert tx.get_node(claims["jti"]) is not None


def test_synchronous_dpop_replay_is_refused_with_its_detection(
    make: Factory, services: Services, clock: FrozenClock
) -> None:
    reg = make.client(paths=["workload-dpop"])
    p = proof(new_key(), "POST", f"{ISSUER}/oauth/token", iat=clock.now())
    assert services.token.handle(_request(reg, dpop=p))["token_type"] == "DPoP"
    with pytest.raises(InvalidDPoPProof, match="replay"):
        services.token.handle(_request(reg, dpop=p))
    with services.store.read() as tx:
        assert len(tx.audit_records(event="detection.proof_replay")) == 1


def test_a_client_that_disconnects_mid_body_gets_an_oauth_error(services: Services) -> None:
    """The ASGI front treats a disconnect as the end of the body: a clear 400, no 500."""
    app = create_app(services)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/oauth/token",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        "client": ("127.0.0.1", 1),
        "query_string": b"",
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 400
    assert b"invalid_request" in sent[1]["body"]
