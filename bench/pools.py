"""Single-use request material, made right before the round that spends it.

wrk's Lua cannot sign, and DPoP proofs, login assertions, refresh tokens and
tokens to revoke are each good for one request. So the harness makes a pool of
them just before a measured run, writes it to a file (one item per line), and
``bench/wrk/post.lua`` sends one item per request, in order (see
:class:`bench.loadgen.Pool`).

Signing uses ``cryptography`` directly (about 13,000 ES256 proofs a second on
one core): the header is encoded once per key, each item only encodes its claims
and signs.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

_ECDSA = ec.ECDSA(hashes.SHA256())


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _int_b64(n: int) -> str:
    return _b64(n.to_bytes(32, "big")).decode("ascii")


class ES256Signer:
    """Compact ES256 JWS with one P-256 key and one fixed header."""

    def __init__(self, header: dict[str, Any], key: ec.EllipticCurvePrivateKey | None = None):
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        self._head = _b64(json.dumps({"alg": "ES256", **header}, separators=(",", ":")).encode())

    def public_jwk(self) -> dict[str, str]:
        numbers = self.key.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": _int_b64(numbers.x), "y": _int_b64(numbers.y)}

    def sign(self, claims: dict[str, Any]) -> str:
        signing_input = self._head + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
        r, s = utils.decode_dss_signature(self.key.sign(signing_input, _ECDSA))
        signature = _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return (signing_input + b"." + signature).decode("ascii")


def dpop_proofs(url: str, count: int, *, method: str = "POST") -> list[str]:
    """``count`` DPoP proofs (RFC 9449 §4.2) for ``method url``: one key, unique ``jti``, now."""
    key = ec.generate_private_key(ec.SECP256R1())
    signer = ES256Signer({"typ": "dpop+jwt"}, key)
    signer = ES256Signer({"typ": "dpop+jwt", "jwk": signer.public_jwk()}, key)
    now = int(time.time())
    return [
        signer.sign({"jti": secrets.token_urlsafe(16), "htm": method, "htu": url, "iat": now})
        for _ in range(count)
    ]


class Upstream:
    """An upstream identity provider whose signed login assertions (RFC 7523) tokentrail trusts."""

    issuer = "https://idp.bench.example"
    audience = "https://tokentrail.bench.example"
    kid = "bench-idp"

    def __init__(self) -> None:
        self._signer = ES256Signer({"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self._signer.public_jwk(), "kid": self.kid, "alg": "ES256"}]}

    def assertions(self, count: int, *, subjects: int = 1000) -> list[str]:
        """``count`` one-use login assertions for ``subjects`` different people."""
        now = int(time.time())
        return [
            self._signer.sign(
                {
                    "iss": self.issuer,
                    "aud": self.audience,
                    "sub": f"user-{i % subjects}@bench.example",
                    "iat": now,
                    "exp": now + 240,
                    "jti": secrets.token_urlsafe(16),
                }
            )
            for i in range(count)
        ]


def evenly(items: list[str], count: int) -> list[str]:
    """Up to ``count`` items spread evenly over ``items`` (first and last included)."""
    if len(items) <= count:
        return list(items)
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


#: ``make(n)`` returns ``n`` fresh single-use items.
Maker = Callable[[int], list[str]]
