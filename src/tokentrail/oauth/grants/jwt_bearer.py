"""JWT Bearer Grant — RFC 7523 §2.1: an upstream login becomes a session.

A trusted upstream identity provider signs an assertion about a person; the
client presents it and gets an access token and a refresh token. Lineage:

    upstream credential (issuer + subject)  ->  session  ->  refresh token  ->  access token

The upstream credential node has a deterministic id derived from issuer and
subject, so every session of that person hangs under one node, and revoking it
ends them all ("sign out everywhere").
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

from tokentrail import crypto, ids
from tokentrail.audit import Event
from tokentrail.clock import MAX_CLOCK_SKEW
from tokentrail.errors import InvalidGrant, InvalidToken
from tokentrail.model import CredentialKind, Node, NodeKind, TrustedIssuer
from tokentrail.oauth.authority import Authority, token_response
from tokentrail.oauth.binding import Binding
from tokentrail.oauth.client_auth import AuthenticatedClient
from tokentrail.oauth.request import OAuthRequest
from tokentrail.policy.paths import Grant
from tokentrail.sessions import network_allowed, session_limits
from tokentrail.upstream import REFETCH_INTERVAL, claimed_aal, fetch_jwks


def session_binding(required: str, binding: Binding, *, public: bool) -> dict[str, str]:
    """What the session's refresh tokens stay bound to.

    RFC 9449 §5: refresh tokens of public clients are bound to the DPoP key;
    a path that requires a binding binds every client's session the same way.
    """
    if not (public or required != "none"):
        return {}
    if binding.jkt is not None:
        return {"jkt": binding.jkt}
    if binding.x5t is not None:
        return {"x5t": binding.x5t}
    return {}


def upstream_node_id(issuer: str, subject: str) -> str:
    """The lineage id of an upstream login: stable per (issuer, subject)."""
    return "up_" + crypto.sha256_b64url(f"{issuer}\x00{subject}".encode())[:22]


class JwtBearerGrant:
    GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    DEFERS_WRITE = False

    def __init__(self, authority: Authority) -> None:
        self._a = authority

    def issue(
        self, auth: AuthenticatedClient, req: OAuthRequest, binding: Binding
    ) -> dict[str, Any]:
        a = self._a
        client = auth.client
        assertion = req.require("assertion")
        path = a.resolve_path(client, Grant.JWT_BEARER, CredentialKind.UPSTREAM_ASSERTION, binding)
        now = a.clock.now()
        trusted, claims = self._verify(assertion, now)
        issuer = trusted.issuer
        if not network_allowed(path, req.client_ip):
            raise InvalidGrant(f"path {path.id} does not allow sessions from this network")
        aal = min(claimed_aal(claims), trusted.max_aal)
        required = path.assurance_level
        if required is not None and aal < int(required.value[-1]):
            # SP 800-63B-4 §5.1: a session is never considered higher than its authentication.
            raise InvalidGrant(
                f"path {path.id} requires {required.value}; the assertion proves AAL{aal}"
            )
        with a.store.write() as tx:
            # RFC 7523 §3 (7): an assertion is good for one use.
            key = crypto.hash_secret(f"assertion\x00{issuer}\x00{claims['jti']}")
            if not tx.remember_once(key, expires_at=float(claims["exp"]) + MAX_CLOCK_SKEW, now=now):
                raise InvalidGrant("assertion was already used")
            subject = claims["sub"]
            scope = a.grant_scope(req.get("scope"), list(client.scopes), path=path)
            audience = a.grant_audience(
                req.get_all("resource") + req.get_all("audience"),
                list(client.audiences),
                path=path,
            )
            upstream = Node(
                id=upstream_node_id(issuer, subject),
                kind=NodeKind.CREDENTIAL,
                path_id=None,
                client_id=None,
                subject=subject,
                team_id=None,
                parents=(),
                ancestors=(),
                created_at=now,
                expires_at=None,
                meta={"issuer": issuer, "subject": subject, "kind": "upstream_login"},
            )
            if not tx.insert_node_if_absent(upstream) and tx.first_revoked([upstream.id]):
                # Fail closed: a session under a revoked login would be dead on arrival.
                raise InvalidGrant("the upstream login of this subject has been revoked")
            lifetime, _idle = session_limits(path)
            session = Node(
                id=ids.new_id("ses"),
                kind=NodeKind.SESSION,
                path_id=path.id,
                client_id=client.id,
                subject=subject,
                team_id=client.team_id,
                parents=(upstream.id,),
                ancestors=(upstream.id,),
                created_at=now,
                expires_at=float(math.floor(now + lifetime)),
                meta={
                    "scope": scope,
                    "aud": audience,
                    "issuer": issuer,
                    "auth_time": claims.get("auth_time", claims.get("iat")),
                    "aal": aal,
                    **session_binding(path.binding, binding, public=auth.credential is None),
                },
            )
            tx.insert_node(session)
            tx.append_audit(
                Event.SESSION_CREATED,
                at=now,
                actor=f"client:{client.id}",
                node_id=session.id,
                client_id=client.id,
                subject=subject,
                team_id=client.team_id,
                data={"path": path.id, "issuer": issuer, "expires_at": session.expires_at},
            )
            minted, refresh_secret = a.mint_session_tokens(
                tx,
                path=path,
                client=client,
                session=session,
                subject=subject,
                audience=audience,
                scope=scope,
                binding=binding,
                now=now,
            )
        return token_response(minted, now=now, refresh_token=refresh_secret)

    def _verify(self, assertion: str, now: float) -> tuple[TrustedIssuer, dict[str, Any]]:
        """RFC 7523 §3: issuer trusted, signature, sub, aud, exp, nbf, jti present.

        Runs outside the write transaction: a key refetch from the provider must
        not hold the database's write lock.
        """
        try:
            unverified = json.loads(crypto.b64url_decode(assertion.split(".")[1]))
            issuer = unverified["iss"]
        except (IndexError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise InvalidGrant("assertion is not a JWT with an iss claim") from exc
        # Printable only: a NUL would reach the database (PostgreSQL rejects it in text).
        if not isinstance(issuer, str) or not issuer.isprintable():
            raise InvalidGrant("assertion iss must be a string")
        with self._a.store.read() as tx:
            trusted = tx.get_issuer(issuer)
        if trusted is None:
            raise InvalidGrant("assertion issuer is not trusted")
        try:
            _, claims = crypto.verify_foreign_jwt(assertion, trusted.jwks)
        except InvalidToken as exc:
            trusted = self._refetch(trusted, now)
            if trusted is None:
                raise InvalidGrant("assertion signature is not valid for its issuer") from exc
            try:
                _, claims = crypto.verify_foreign_jwt(assertion, trusted.jwks)
            except InvalidToken as again:
                raise InvalidGrant("assertion signature is not valid for its issuer") from again
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidGrant("assertion must carry a sub")
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if trusted.audience not in auds:
            raise InvalidGrant("assertion audience does not name this server")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise InvalidGrant("assertion must carry exp")
        if exp <= now - MAX_CLOCK_SKEW:
            raise InvalidGrant("assertion has expired")
        if exp > now + self._a.settings.assertion_max_lifetime:
            raise InvalidGrant("assertion exp is too far in the future")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and nbf > now + MAX_CLOCK_SKEW:
            raise InvalidGrant("assertion is not yet valid")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidGrant("assertion must carry jti (replay protection)")
        return trusted, claims

    def _refetch(self, trusted: TrustedIssuer, now: float) -> TrustedIssuer | None:
        """The provider with fresh keys, if it has a JWKS URL not fetched in the last minute."""
        if trusted.jwks_url is None:
            return None
        if trusted.jwks_fetched_at is not None and now - trusted.jwks_fetched_at < REFETCH_INTERVAL:
            return None
        try:
            jwks = fetch_jwks(trusted.jwks_url)
        except ValueError:
            return None
        with self._a.store.write() as tx:
            tx.set_issuer_jwks(trusted.issuer, jwks, at=now)
        return replace(trusted, jwks=jwks, jwks_fetched_at=now)
