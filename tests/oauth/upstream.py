"""A fake upstream identity provider: a key, trusted by tokentrail, that signs assertions."""

from __future__ import annotations

import secrets
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey

from tokentrail.clock import FrozenClock
from tokentrail.services import Services

UPSTREAM_ISSUER = "https://idp.example"
AUDIENCE = "http://testserver"


class Upstream:
    def __init__(self, services: Services, clock: FrozenClock) -> None:
        self.key = ECKey.generate_key("P-256", parameters={"kid": "idp-1"})
        self.clock = clock
        services.admin.trust_issuer(
            UPSTREAM_ISSUER,
            jwks={"keys": [self.key.as_dict(private=False)]},
            audience=AUDIENCE,
            actor="test",
        )

    def assertion(self, subject: str, **extra: Any) -> str:
        now = int(self.clock.now())
        claims = {
            "iss": UPSTREAM_ISSUER,
            "sub": subject,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(12),
            **extra,
        }
        return jwt.encode({"alg": "ES256", "kid": "idp-1"}, claims, self.key)
