"""tokentrail for resource servers: verify access tokens in-process.

::

    from tokentrail.sdk import FeedRevocations, RemoteJwks, Verifier

    verifier = Verifier(
        issuer="https://auth.example.com",
        audience="https://api.example.com",
        jwks=RemoteJwks("https://auth.example.com/jwks.json"),
        # Follows the revocation feed; fails closed 30 s after losing it.
        revocations=FeedRevocations(
            "https://auth.example.com", client_id=CLIENT_ID, client_secret=SECRET, bound=30
        ),
    )
    token = verifier.verify(raw, dpop_proof=proof, method="GET", url=url, scheme="DPoP")

See docs/verifier.md. :class:`TokenAuthMiddleware` protects an ASGI app;
``RequireToken`` (imported lazily from :mod:`tokentrail.sdk.fastapi`, needs
FastAPI) is a FastAPI dependency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tokentrail.oauth.binding import Binding
from tokentrail.oauth.dpop import Nonces as DPoPNonces
from tokentrail.sdk.asgi import TokenAuthMiddleware, request_url, tls_client_cert
from tokentrail.sdk.errors import (
    BadSignature,
    BindingMismatch,
    BoundTokenAsBearer,
    Expired,
    InsufficientScope,
    InvalidProof,
    KeysUnavailable,
    MalformedRequest,
    MalformedToken,
    MissingCertificate,
    MissingProof,
    MissingToken,
    NotYetValid,
    ProofKeyMismatch,
    ProofReplayed,
    Revoked,
    StaleRevocationView,
    UnknownKey,
    UseDPoPNonce,
    VerificationError,
    WrongAudience,
    WrongIssuer,
    WrongTokenType,
)
from tokentrail.sdk.feed import FeedRevocations
from tokentrail.sdk.jwks import JwksSource, PublishedKeys, RemoteJwks, StaticJwks
from tokentrail.sdk.revocation import RevocationView, StaticRevocations
from tokentrail.sdk.verifier import (
    NonceSource,
    ReplayCache,
    VerifiedToken,
    Verifier,
    parse_authorization,
    require_scope,
)

if TYPE_CHECKING:
    from tokentrail.sdk.fastapi import RequireToken

__all__ = [
    "BadSignature",
    "Binding",
    "BindingMismatch",
    "BoundTokenAsBearer",
    "DPoPNonces",
    "Expired",
    "FeedRevocations",
    "InsufficientScope",
    "InvalidProof",
    "JwksSource",
    "KeysUnavailable",
    "MalformedRequest",
    "MalformedToken",
    "MissingCertificate",
    "MissingProof",
    "MissingToken",
    "NonceSource",
    "NotYetValid",
    "ProofKeyMismatch",
    "ProofReplayed",
    "PublishedKeys",
    "RemoteJwks",
    "ReplayCache",
    "RequireToken",
    "RevocationView",
    "Revoked",
    "StaleRevocationView",
    "StaticJwks",
    "StaticRevocations",
    "TokenAuthMiddleware",
    "UnknownKey",
    "UseDPoPNonce",
    "VerificationError",
    "VerifiedToken",
    "Verifier",
    "WrongAudience",
    "WrongIssuer",
    "WrongTokenType",
    "parse_authorization",
    "request_url",
    "require_scope",
    "tls_client_cert",
]


def __getattr__(name: str) -> Any:
    """``RequireToken`` is imported on first use: only it needs FastAPI."""
    if name == "RequireToken":
        from tokentrail.sdk.fastapi import RequireToken

        return RequireToken
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
