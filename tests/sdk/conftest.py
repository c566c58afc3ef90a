"""Fixtures for the resource-server SDK: real tokens minted by the running app, and a
verifier reading the app's published keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import ISSUER, Factory, Registered
from tests.dpop_proofs import new_key, proof
from tokentrail import crypto
from tokentrail.clock import FrozenClock
from tokentrail.sdk import StaticJwks, StaticRevocations, Verifier
from tokentrail.services import Services

AUDIENCE = "https://api.example"
RS_URL = "https://api.example/items"
TOKEN_URL = f"{ISSUER}/oauth/token"


@dataclass
class Minted:
    token: str
    client: Registered
    #: The DPoP key the token is bound to (None for a bearer token).
    key: Any = None

    def proof(self, clock: FrozenClock, method: str = "GET", url: str = RS_URL, **kw: Any) -> str:
        """A fresh proof for a request to the resource with this token."""
        kw.setdefault("access_token", self.token)
        return proof(kw.pop("key", self.key), method, url, iat=clock.now(), **kw)


def mint_bearer(http: TestClient, reg: Registered, scope: str = "read") -> str:
    r = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(reg.client_id, reg.secret or ""),
    )
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "Bearer"
    return str(r.json()["access_token"])


def mint_bound(http: TestClient, reg: Registered, key: Any, clock: FrozenClock) -> str:
    r = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        auth=(reg.client_id, reg.secret or ""),
        headers={"DPoP": proof(key, "POST", TOKEN_URL, iat=clock.now())},
    )
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP"
    return str(r.json()["access_token"])


def resign(services: Services, token: str, *, typ: str = "at+jwt", **changes: Any) -> str:
    """``token``'s claims with ``changes`` (None drops a claim), signed by the app's key."""
    claims = services.authority.tokens.verify(token)
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    signer = services.keys.signer()
    if typ == "at+jwt":
        return signer.sign(claims)
    return crypto.TokenSigner(signer._key, typ=typ).sign(claims)


@pytest.fixture
def jwks_doc(http: TestClient) -> dict[str, Any]:
    return dict(http.get("/jwks.json").json())


@pytest.fixture
def revocations() -> StaticRevocations:
    return StaticRevocations()


@pytest.fixture
def verifier(
    jwks_doc: dict[str, Any], revocations: StaticRevocations, clock: FrozenClock
) -> Verifier:
    return Verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks=StaticJwks(jwks_doc),
        revocations=revocations,
        clock=clock,
        realm="api",
    )


@pytest.fixture
def bearer(http: TestClient, make: Factory) -> Minted:
    reg = make.client()
    return Minted(mint_bearer(http, reg), reg)


@pytest.fixture
def bound(http: TestClient, make: Factory, clock: FrozenClock) -> Minted:
    reg = make.client(paths=["workload-dpop"])
    key = new_key()
    return Minted(mint_bound(http, reg, key, clock), reg, key)
