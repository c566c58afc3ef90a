"""DPoP proofs made with joserfc (an implementation tokentrail did not write)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

from joserfc import jws
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

ECKeyT = ECKey | OKPKey | RSAKey


def new_key(kind: str = "EC") -> Any:
    if kind == "EC":
        return ECKey.generate_key("P-256")
    if kind == "OKP":
        return OKPKey.generate_key("Ed25519")
    return RSAKey.generate_key(2048)


def thumbprint(key: Any) -> str:
    return str(key.thumbprint())


def ath(token: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()


def proof(
    key: Any,
    htm: str,
    htu: str,
    *,
    iat: float | None = None,
    jti: str | None = None,
    access_token: str | None = None,
    nonce: str | None = None,
    typ: str = "dpop+jwt",
    alg: str | None = None,
    jwk: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    alg = alg or {"EC": "ES256", "OKP": "EdDSA", "RSA": "RS256"}[key.key_type]
    header: dict[str, Any] = {
        "typ": typ,
        "alg": alg,
        "jwk": jwk if jwk is not None else key.as_dict(private=False),
    }
    claims: dict[str, Any] = {
        "jti": jti or secrets.token_urlsafe(16),
        "htm": htm,
        "htu": htu,
        "iat": int(iat if iat is not None else time.time()),
    }
    if access_token is not None:
        claims["ath"] = ath(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    claims.update(extra or {})

    return jws.serialize_compact(header, json.dumps(claims).encode(), key, algorithms=[alg])


def hmac_proof(htm: str, htu: str) -> str:
    """A proof MACed with a shared secret: RFC 9449 forbids it."""

    key = OctKey.generate_key(256)
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct"}}
    claims = {"jti": secrets.token_urlsafe(16), "htm": htm, "htu": htu, "iat": int(time.time())}
    return jws.serialize_compact(header, json.dumps(claims).encode(), key, algorithms=["HS256"])


def none_proof(htm: str, htu: str, key: Any) -> str:
    """An unsigned proof (alg none)."""

    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    header = {"typ": "dpop+jwt", "alg": "none", "jwk": key.as_dict(private=False)}
    claims = {"jti": secrets.token_urlsafe(16), "htm": htm, "htu": htu, "iat": int(time.time())}
    return f"{b64(header)}.{b64(claims)}."
