"""The ASGI middleware in a small Starlette resource server, driven by TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.sdk.conftest import Minted
from tokentrail.clock import FrozenClock
from tokentrail.sdk import (
    StaticRevocations,
    TokenAuthMiddleware,
    VerifiedToken,
    Verifier,
    request_url,
    tls_client_cert,
)
from tokentrail.sdk.asgi import SCOPE_KEY

API = "https://api.example"


async def items(request: Request) -> JSONResponse:
    token: VerifiedToken = request.state.token
    assert request.scope[SCOPE_KEY] is token
    return JSONResponse({"client_id": token.client_id, "binding": token.binding.kind})


async def health(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def socket(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_json({"client_id": ws.state.token.client_id})
    await ws.close()


def _app(verifier: Verifier, **options: Any) -> Starlette:
    return Starlette(
        routes=[
            Route("/items", items),
            Route("/healthz", health),
            Route("/public/info", health),
            WebSocketRoute("/ws", socket),
        ],
        middleware=[Middleware(TokenAuthMiddleware, verifier=verifier, **options)],
    )


@pytest.fixture
def api(verifier: Verifier) -> Iterator[TestClient]:
    app = _app(verifier, skip_paths={"/healthz"}, skip_prefixes=("/public/",))
    with TestClient(app, base_url=API) as client:
        yield client


def _dpop(bound: Minted, clock: FrozenClock, **kw: Any) -> dict[str, str]:
    return {"Authorization": f"DPoP {bound.token}", "DPoP": bound.proof(clock, **kw)}


def test_bearer_token(api: TestClient, bearer: Minted) -> None:
    """A valid bearer token reaches the route with the verified token in request.state."""
    r = api.get("/items", headers={"Authorization": f"Bearer {bearer.token}"})
    assert r.status_code == 200
    assert r.json() == {"client_id": bearer.client.client_id, "binding": "none"}


def test_dpop_token_with_proof(api: TestClient, bound: Minted, clock: FrozenClock) -> None:
    """A DPoP-bound token with a proof naming this URL is accepted."""
    r = api.get("/items", headers=_dpop(bound, clock))
    assert r.status_code == 200
    assert r.json()["binding"] == "dpop"


def test_no_token(api: TestClient) -> None:
    """Without credentials: 401 offering both schemes, without an error code."""
    r = api.get("/items")
    assert r.status_code == 401
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="api", DPoP algs="ES256')
    assert "error=" not in challenge


def test_bound_token_as_bearer(api: TestClient, bound: Minted, clock: FrozenClock) -> None:
    """A DPoP-bound token sent as Bearer gets 401 with a DPoP challenge."""
    headers = {"Authorization": f"Bearer {bound.token}", "DPoP": bound.proof(clock)}
    r = api.get("/items", headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith('DPoP realm="api", error="invalid_token"')
    assert r.json()["error"] == "invalid_token"


def test_invalid_proof(api: TestClient, bound: Minted, clock: FrozenClock) -> None:
    """A proof for another URL gets 401 invalid_dpop_proof with algs."""
    r = api.get("/items", headers=_dpop(bound, clock, url=f"{API}/other"))
    assert r.status_code == 401
    challenge = r.headers["WWW-Authenticate"]
    assert 'error="invalid_dpop_proof"' in challenge
    assert 'algs="' in challenge


def test_replayed_proof(api: TestClient, bound: Minted, clock: FrozenClock) -> None:
    """The same proof on a second request is refused."""
    headers = _dpop(bound, clock)
    assert api.get("/items", headers=headers).status_code == 200
    assert api.get("/items", headers=headers).status_code == 401


def test_two_authorization_headers(api: TestClient, bearer: Minted) -> None:
    """Two Authorization headers are a bad request (400 invalid_request)."""
    value = f"Bearer {bearer.token}"
    r = api.get("/items", headers=[("Authorization", value), ("Authorization", value)])
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_revoked(api: TestClient, bearer: Minted, revocations: StaticRevocations) -> None:
    """A token whose credential is revoked is refused with invalid_token."""
    revocations.add(bearer.client.credential_id)
    r = api.get("/items", headers={"Authorization": f"Bearer {bearer.token}"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_skipped_paths(api: TestClient) -> None:
    """Configured paths and prefixes are served without a token."""
    assert api.get("/healthz").status_code == 200
    assert api.get("/public/info").status_code == 200


def test_public_url(verifier: Verifier, bound: Minted, clock: FrozenClock) -> None:
    """Behind a proxy the proof names public_url + path, not the internal address."""
    app = _app(verifier, public_url="https://gateway.example/")
    with TestClient(app, base_url="http://internal:8080") as client:
        headers = _dpop(bound, clock, url="https://gateway.example/items")
        assert client.get("/items", headers=headers).status_code == 200


def test_websocket_with_token(api: TestClient, bearer: Minted) -> None:
    """A WebSocket handshake with a valid token is accepted."""
    headers = {"Authorization": f"Bearer {bearer.token}"}
    with api.websocket_connect("/ws", headers=headers) as ws:
        assert ws.receive_json() == {"client_id": bearer.client.client_id}


def test_websocket_without_token(api: TestClient) -> None:
    """A WebSocket handshake without a token is closed with policy violation (1008)."""
    with pytest.raises(WebSocketDisconnect) as caught, api.websocket_connect("/ws"):
        pass
    assert caught.value.code == 1008


class TestRequestUrl:
    def test_from_host_header(self) -> None:
        """The URL is rebuilt from scheme, Host header and raw path, without the query."""
        scope = {
            "type": "http",
            "scheme": "https",
            "path": "/a b",
            "raw_path": b"/a%20b?x=1",
            "headers": [(b"host", b"api.example")],
        }
        assert request_url(scope) == "https://api.example/a%20b"

    def test_from_server_address(self) -> None:
        """Without a Host header the server address is used; default ports are dropped."""
        scope = {"type": "http", "scheme": "http", "path": "/x", "server": ("10.0.0.1", 80)}
        assert request_url(scope) == "http://10.0.0.1/x"
        scope["server"] = ("10.0.0.1", 8080)
        scope["root_path"] = "/api"
        assert request_url(scope) == "http://10.0.0.1:8080/api/x"

    def test_websocket_scheme(self) -> None:
        """A WebSocket URL is named with its HTTP scheme."""
        scope = {"type": "websocket", "scheme": "wss", "path": "/ws", "headers": []}
        assert request_url(scope) == "https://localhost/ws"


class TestClientCertificate:
    def test_tls_extension(self) -> None:
        """The first certificate of the ASGI TLS extension's chain is the client's."""
        scope = {"extensions": {"tls": {"client_cert_chain": ["PEM1", "PEM2"]}}}
        assert tls_client_cert(scope) == "PEM1"

    def test_absent(self) -> None:
        """Without the extension there is no client certificate."""
        assert tls_client_cert({}) is None
        assert tls_client_cert({"extensions": {"tls": {}}}) is None
