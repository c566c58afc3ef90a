"""Token Introspection — RFC 7662.

Callers authenticate as clients (§2.1: the endpoint MUST require authorization,
so tokens cannot be scanned). Every negative case — unknown, expired, revoked,
rotated-out, malformed — is the same ``{"active": false}`` (§2.2). Active answers
carry the token's declared path (``tt_path``) and lineage ancestors (``tt_anc``).
"""

from __future__ import annotations

from typing import Any

from tokentrail import crypto
from tokentrail.errors import InvalidToken
from tokentrail.model import NodeKind
from tokentrail.oauth.access_token import lineage, looks_like_jwt
from tokentrail.oauth.authority import Authority
from tokentrail.oauth.client_auth import ClientAuthenticator
from tokentrail.oauth.refresh_tokens import looks_like_refresh_token
from tokentrail.oauth.request import OAuthRequest
from tokentrail.policy.paths import DetectionKind

INACTIVE: dict[str, Any] = {"active": False}
_CLAIMS = (
    "cnf",
    "scope",
    "client_id",
    "sub",
    "aud",
    "iss",
    "exp",
    "iat",
    "jti",
    "act",
    "tt_path",
    "tt_anc",
)


class IntrospectionEndpoint:
    def __init__(self, authority: Authority, authenticator: ClientAuthenticator) -> None:
        self._a = authority
        self._authenticator = authenticator

    def handle(self, req: OAuthRequest) -> dict[str, Any]:
        self._authenticator.authenticate(req, allow_public=False)
        token = req.require("token")
        if looks_like_jwt(token):
            return self.access_token(token)
        if looks_like_refresh_token(token):
            return self.refresh_token(token)
        return INACTIVE

    def access_token(self, token: str) -> dict[str, Any]:
        try:
            claims = self._a.tokens.verify(token)
        except InvalidToken:
            return INACTIVE
        with self._a.store.lookup() as db:
            revoked = db.first_revoked(lineage(claims)) is not None
            node = db.node(claims["jti"]) if revoked else None
        if revoked:
            # Someone still holds and presents a token that was revoked.
            self._a.detections.fire(
                DetectionKind.REVOKED_TOKEN_USE, node=node, evidence={"via": "introspection"}
            )
            return INACTIVE
        # RFC 9449 §6.2: a DPoP-bound token introspects as token_type DPoP with cnf.jkt.
        bound = isinstance(claims.get("cnf"), dict) and "jkt" in claims["cnf"]
        out: dict[str, Any] = {"active": True, "token_type": "DPoP" if bound else "Bearer"}
        out.update((k, claims[k]) for k in _CLAIMS if k in claims)
        return out

    def refresh_token(self, token: str) -> dict[str, Any]:
        now = self._a.clock.now()
        with self._a.store.read() as tx:
            node = tx.get_node_by_token_hash(crypto.hash_secret(token))
            if (
                node is None
                or node.kind is not NodeKind.REFRESH_TOKEN
                or node.used_at is not None
                or (node.expires_at is not None and node.expires_at <= now)
                or tx.first_revoked(node.lineage) is not None
            ):
                return INACTIVE
        out: dict[str, Any] = {
            "active": True,
            "client_id": node.client_id,
            "sub": node.subject,
            "iss": self._a.issuer,
            "iat": int(node.created_at),
            "jti": node.id,
            "tt_path": node.path_id,
            "tt_anc": list(node.ancestors),
        }
        if node.expires_at is not None:
            out["exp"] = int(node.expires_at)
        if node.meta.get("scope"):
            out["scope"] = " ".join(node.meta["scope"])
        return out
