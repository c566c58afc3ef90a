"""Authenticating a request by the access token it carries (RFC 6750 §2.1, RFC 9449 §7).

Used by tokentrail's own token-protected endpoints (the session self-service
API). A DPoP-bound token must come as ``Authorization: DPoP`` with a proof for
this request; presenting it as ``Bearer`` is refused (RFC 9449 §7.2).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from tokentrail.crypto import DPOP_ALGORITHMS
from tokentrail.errors import InvalidToken, OAuthError
from tokentrail.oauth.access_token import lineage
from tokentrail.oauth.dpop import InvalidDPoPProof, UseDPoPNonce
from tokentrail.services import Services


class TokenRequired(OAuthError):
    """RFC 6750 §3.1 ``invalid_token`` with a challenge for both schemes."""

    error = "invalid_token"
    status = 401

    def headers(self) -> dict[str, str]:
        desc = f', error_description="{self.description}"' if self.description else ""
        algs = " ".join(DPOP_ALGORITHMS)  # RFC 9449 §7.1: every algorithm proofs may use
        return {"WWW-Authenticate": f'Bearer error="invalid_token"{desc}, DPoP algs="{algs}"'}


class ProofRefused(InvalidDPoPProof):
    """RFC 9449 §7.1: at a protected resource an invalid proof is a 401, not a 400."""

    status = 401


class ResourceNonce(UseDPoPNonce):
    """RFC 9449 §9: a protected resource asks for a nonce with a 401."""

    status = 401


def authenticate_token(services: Services, request: Request) -> dict[str, Any]:
    """The verified, live claims of the request's access token; raises OAuth errors."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    scheme = scheme.lower()
    token = token.strip()
    if scheme not in ("bearer", "dpop") or not token:
        raise TokenRequired("an access token is required")
    try:
        claims = services.authority.tokens.verify(token)
    except InvalidToken as exc:
        raise TokenRequired("the access token is invalid or expired") from exc
    with services.store.read() as tx:
        if tx.first_revoked(lineage(claims)) is not None:
            raise TokenRequired("the access token is revoked")
    jkt = claims.get("cnf", {}).get("jkt") if isinstance(claims.get("cnf"), dict) else None
    if jkt is not None:
        proofs = request.headers.getlist("dpop")
        if scheme != "dpop" or len(proofs) != 1:
            raise TokenRequired("this token is DPoP-bound: send it as DPoP with a proof")
        try:
            proof = services.dpop.validate(
                proofs[0],
                method=request.method,
                url=services.settings.issuer + request.url.path,
                access_token=token,
                error=ProofRefused,
            )
        except UseDPoPNonce as exc:
            raise ResourceNonce(exc.nonce) from exc
        if proof.jkt != jkt:
            raise ProofRefused("the proof's key is not the one the token is bound to")
    elif scheme == "dpop":
        raise TokenRequired("this token is not DPoP-bound: send it as Bearer")
    return claims
