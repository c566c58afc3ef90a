"""Token Introspection — RFC 7662.

Callers authenticate as clients (§2.1: the endpoint MUST require authorization,
so tokens cannot be scanned). Every negative case — unknown, expired, revoked,
rotated-out, malformed — is the same ``{"active": false}`` (§2.2). Active answers
carry the token's declared path (``tt_path``) and lineage ancestors (``tt_anc``).
"""

from __future__ import annotations

import hmac
from typing import Any

from tokentrail import crypto
from tokentrail.errors import InvalidToken
from tokentrail.model import NodeKind
from tokentrail.oauth.access_token import digest, lineage, looks_like_jwt
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
        """Active when the token is byte for byte one we issued (its SHA-256 equals the
        digest its node recorded: no signature check needed, since the record is the
        authority), still names a current signing key, has not expired, and nothing
        in its lineage is revoked. Tokens recorded without a digest are verified by
        signature instead."""
        tokens = self._a.tokens
        try:
            claims = tokens.issued_claims(token)
        except InvalidToken:
            return INACTIVE
        with self._a.store.lookup() as db:
            found = db.issued(claims["jti"], lineage(claims))
            if found is None:
                return INACTIVE  # no such node: not a token of ours
            meta, revoked_id = found
            recorded = meta.get("token_sha256")
            if recorded is None:
                try:
                    tokens.verify(token)  # recorded before digests were kept
                except InvalidToken:
                    return INACTIVE
            elif not (isinstance(recorded, str) and hmac.compare_digest(recorded, digest(token))):
                return INACTIVE
            node = db.node(claims["jti"]) if revoked_id is not None else None
        if revoked_id is not None:
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
