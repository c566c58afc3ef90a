"""Helpers shared by the OAuth endpoint tests: client assertions, tokens, audit reads."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.testclient import TestClient

from tests.conftest import ISSUER, Factory, Registered
from tokentrail.model import AuditRecord
from tokentrail.services import Services

TOKEN_URL = f"{ISSUER}/oauth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def ec_key(kid: str | None = None) -> ECKey:
    """A fresh P-256 key with a ``kid``."""
    return ECKey.generate_key("P-256", parameters={"kid": kid or secrets.token_hex(4)})


def public_jwks(*keys: ECKey) -> dict[str, Any]:
    return {"keys": [dict(k.as_dict(private=False)) for k in keys]}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def assertion(
    key: ECKey, client_id: str, now: float, *, header: dict[str, Any] | None = None, **claims: Any
) -> str:
    """An RFC 7523 §2.2 client assertion for ``client_id``; ``claims`` override or drop
    (value None) the defaults."""
    body: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": int(now) + 60,
        "iat": int(now),
        "jti": secrets.token_hex(8),
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(header or {"alg": "ES256", "kid": key.kid}, body, key)


def assertion_form(token: str, **extra: str) -> dict[str, str]:
    return {
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": token,
        **extra,
    }


def basic(user: str, password: str) -> dict[str, str]:
    """An ``Authorization: Basic`` header from already-encoded halves."""
    raw = f"{user}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


def get_token(http: TestClient, client: Registered, **data: str) -> str:
    """An access token from the client credentials grant (client_secret_basic)."""
    assert client.secret is not None
    r = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", **data},
        auth=(client.client_id, client.secret),
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def introspect(http: TestClient, caller: Registered, token: str) -> dict[str, Any]:
    assert caller.secret is not None
    r = http.post(
        "/oauth/introspect",
        data={"token": token},
        auth=(caller.client_id, caller.secret),
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def audit(services: Services, event: str) -> list[AuditRecord]:
    with services.store.read() as tx:
        return tx.audit_records(event=event)


def revocation_count(services: Services) -> int:
    with services.store.read() as tx:
        return len(tx.revocations_since(0))


def claims_of(token: str) -> dict[str, Any]:
    """The unverified payload of a compact JWS."""
    payload = token.split(".")[1]
    result: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return result


__all__ = ["Factory", "Registered"]
